"""`Signature` (the immutable value both forms produce) and `create_signature`.

A `Signature` holds ordered input and output `SignatureField`s and instructions. Its pydantic
models, JSON Schema and rendered prompt pieces are computed on first use and kept on the instance.
Subclassing `Signature` is the class form: the class body declares fields with `InputField` /
`OutputField`, the docstring is the instructions, and `QA.signature()` returns the value.
"""

from __future__ import annotations

import functools
import inspect
import keyword
import typing
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from kaizen.errors import InputValidationError, SignatureError

from . import fieldtypes
from .compile import build_model, describe_problem, friendly_errors, output_schema, values_of
from .fields import FieldDeclaration, SignatureField, constraint_problem
from .parser import parse_spec

_SIGNATURE_ATTRIBUTE = "__kaizen_signature__"


class Signature:
    """What an agent takes and returns: typed input and output fields plus instructions.

    Immutable and hashable; equal when fields (name, type, description, default, constraints)
    and instructions are equal. `str(sig)` is a spec that `create_signature` parses back to an
    equal signature.
    """

    __slots__ = (
        "_cache",
        "_hash",
        "input_fields",
        "input_names",
        "instructions",
        "output_fields",
        "output_names",
    )

    input_fields: tuple[SignatureField, ...]
    output_fields: tuple[SignatureField, ...]
    instructions: str
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    _hash: int
    _cache: dict[Any, Any]

    def __new__(cls, *args: Any, **kwargs: Any) -> Signature:
        if cls is not Signature:
            raise TypeError(
                f"{cls.__name__} is a class signature; use {cls.__name__}.signature() or "
                f"create_signature({cls.__name__}) to get its Signature value"
            )
        return object.__new__(cls)

    def __init__(
        self,
        inputs: Iterable[SignatureField],
        outputs: Iterable[SignatureField],
        instructions: str = "",
    ) -> None:
        inputs = tuple(inputs)
        outputs = tuple(outputs)
        _check_fields(inputs, outputs)
        if not isinstance(instructions, str):
            raise TypeError(f"instructions must be a string, got {type(instructions).__name__}")
        self._init(inputs, outputs, instructions)

    @classmethod
    def _trusted(
        cls,
        inputs: tuple[SignatureField, ...],
        outputs: tuple[SignatureField, ...],
        instructions: str,
    ) -> Signature:
        """Build without re-checking fields the parser already checked."""
        sig = object.__new__(Signature)
        sig._init(inputs, outputs, instructions)
        return sig

    def _init(
        self,
        inputs: tuple[SignatureField, ...],
        outputs: tuple[SignatureField, ...],
        instructions: str,
    ) -> None:
        setattr_ = object.__setattr__
        setattr_(self, "input_fields", inputs)
        setattr_(self, "output_fields", outputs)
        setattr_(self, "instructions", instructions)
        setattr_(self, "input_names", tuple(f.name for f in inputs))
        setattr_(self, "output_names", tuple(f.name for f in outputs))
        setattr_(self, "_hash", hash((inputs, outputs, instructions)))
        setattr_(self, "_cache", {})

    # -- class form ----------------------------------------------------------------------------

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        setattr(cls, _SIGNATURE_ATTRIBUTE, _from_class(cls))

    @classmethod
    def signature(cls) -> Signature:
        """The `Signature` value a class signature declares (same kind as the string form's).

        `create_signature(QA)` does the same and also works when a field is named `signature`.
        """
        return _declared(cls)

    # -- value semantics -----------------------------------------------------------------------

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(
            f"Signature is immutable; use with_instructions() (tried to set {name!r})"
        )

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"Signature is immutable (tried to delete {name!r})")

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if not isinstance(other, Signature):
            return NotImplemented
        return (
            self._hash == other._hash
            and self.input_fields == other.input_fields
            and self.output_fields == other.output_fields
            and self.instructions == other.instructions
        )

    def __hash__(self) -> int:
        return self._hash

    def __reduce__(self) -> tuple[Any, ...]:
        return (Signature, (self.input_fields, self.output_fields, self.instructions))

    def __str__(self) -> str:
        text = self._cache.get("str")
        if text is None:
            text = self.spec()
            self._cache["str"] = text
        return text

    def __repr__(self) -> str:
        return f"Signature({str(self)!r})"

    def spec(self, types: Mapping[str, type] | None = None) -> str:
        """The spec string; `types` names unregistered models as they will be passed back in."""
        left = ", ".join(_format_field(f, types) for f in self.input_fields)
        right = ", ".join(_format_field(f, types) for f in self.output_fields)
        prefix = f"{self.instructions!r} " if self.instructions else ""
        return f"{prefix}{left} -> {right}"

    def with_instructions(self, text: str) -> Signature:
        """The same fields with other instructions."""
        if not isinstance(text, str):
            raise TypeError(f"instructions must be a string, got {type(text).__name__}")
        if text == self.instructions:
            return self
        return Signature._trusted(self.input_fields, self.output_fields, text)

    def with_fields(
        self,
        *,
        inputs: Iterable[SignatureField] = (),
        outputs: Iterable[SignatureField] = (),
    ) -> Signature:
        """The same signature with more fields appended (checked like any signature's fields).

        Patterns use it to give an agent an input its own signature lacks (a debater hearing the
        previous round's arguments) without changing the agent the user made.
        """
        added_in, added_out = tuple(inputs), tuple(outputs)
        if not added_in and not added_out:
            return self
        return Signature(
            self.input_fields + added_in, self.output_fields + added_out, self.instructions
        )

    # -- compiled forms ------------------------------------------------------------------------

    @property
    def input_model(self) -> type[BaseModel]:
        """Pydantic model of the inputs: one attribute per field, named like the field.

        A field whose name a pydantic model already uses (`json`, `copy`, `model_dump`, ...) is
        stored as `<name>_` with the field name as its alias; validate by field name either way.
        """
        return build_model("Inputs", self.input_fields)

    @property
    def output_model(self) -> type[BaseModel]:
        """Pydantic model of the outputs (attribute names as for `input_model`)."""
        return build_model("Outputs", self.output_fields)

    @property
    def output_schema(self) -> dict[str, Any]:
        """JSON Schema (Draft 2020-12) of the outputs: all required, no additional properties.

        Built once and shared (agents read it on every call): treat it as read-only and
        `copy.deepcopy` it before changing it.
        """
        schema = self._cache.get("schema")
        if schema is None:
            schema = output_schema(self.output_fields, "Outputs")
            self._cache["schema"] = schema
        return schema

    def schema_text(self) -> str:
        """The output schema as indented JSON (computed once; used in prompts)."""
        text = self._cache.get("schema_text")
        if text is None:
            import json

            text = json.dumps(self.output_schema, indent=2, ensure_ascii=False)
            self._cache["schema_text"] = text
        return text

    def validate_inputs(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Check and coerce input values; apply defaults. Returns `{name: value}` in field order.

        Raises `InputValidationError` naming every missing, unexpected and wrongly typed field.
        """
        names = self.input_names
        problems: list[tuple[str, str]] = []
        known = {k: v for k, v in values.items() if k in names}
        if len(known) != len(values):
            for key in values:
                if key not in names:
                    problems.append(
                        (
                            str(key),
                            f"is not an input of this signature (inputs: {', '.join(names)})",
                        )
                    )
        try:
            instance = self.input_model.model_validate(known)
        except ValidationError as exc:
            problems.extend(friendly_errors(exc, self.input_fields))
            instance = None
        if problems or instance is None:
            details = "; ".join(describe_problem(field, message) for field, message in problems)
            raise InputValidationError(
                f"invalid inputs for signature `{self}`: {details}", errors=problems
            )
        return values_of(instance, names)


def _declared(cls: type[Signature]) -> Signature:
    """The value a `class X(Signature)` declares, or the error its declaration raised."""
    sig = cls.__dict__.get(_SIGNATURE_ATTRIBUTE)
    if isinstance(sig, SignatureError):
        raise SignatureError(sig.message, field=sig.field)
    if sig is None:
        raise TypeError(
            "Signature.signature() is for subclasses; declare fields in `class QA(Signature)` "
            "or call create_signature('question -> answer')"
        )
    assert isinstance(sig, Signature)
    return sig


def _format_field(f: SignatureField, types: Mapping[str, type] | None) -> str:
    text = f"{f.name}: {fieldtypes.format_type(f.type, types)}"
    if f.constraints:
        text += " (" + ", ".join(f"{k}={v!r}" for k, v in f.constraints.items()) + ")"
    if not f.required:
        text += f" = {f.default!r}"
    if f.description:
        text += f" {f.description!r}"
    return text


def _check_fields(inputs: tuple[SignatureField, ...], outputs: tuple[SignatureField, ...]) -> None:
    """The rules the parser enforces, for signatures built from fields or classes."""
    if not inputs:
        raise SignatureError("a signature needs at least one input field")
    if not outputs:
        raise SignatureError("a signature needs at least one output field")
    seen: set[str] = set()
    for side, fields in (("input", inputs), ("output", outputs)):
        for f in fields:
            if not isinstance(f, SignatureField):
                raise TypeError(f"{side} fields must be SignatureField, got {type(f).__name__}")
            name = f.name
            if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
                raise SignatureError(
                    f"{name!r} is not a valid field name (use a Python identifier)", field=str(name)
                )
            if name.startswith("_"):
                raise SignatureError(f"field name {name!r} must not start with '_'", field=name)
            if name in seen:
                raise SignatureError(
                    f"field {name!r} appears twice; field names must be unique", field=name
                )
            seen.add(name)
            if side == "output" and not f.required:
                raise SignatureError(f"output field {name!r} cannot have a default", field=name)
            try:
                normalized = fieldtypes.normalize(f.type)
            except fieldtypes.UnsupportedTypeError as exc:
                raise SignatureError(f"field {name!r}: {exc}", field=name) from None
            if normalized != f.type:
                raise SignatureError(
                    f"field {name!r}: type {f.type!r} is not in canonical form; build fields "
                    f"through create_signature or pass {fieldtypes.format_type(normalized)}",
                    field=name,
                )
            problem = constraint_problem(f.type, f.constraints)
            if problem is not None:
                raise SignatureError(f"field {name!r}: {problem}", field=name)


def _from_class(cls: type[Signature]) -> Signature | SignatureError | None:
    """Collect the fields a `class X(Signature)` declares (its own and its bases')."""
    declared: dict[str, tuple[FieldDeclaration, type]] = {}
    annotated: dict[str, type] = {}
    for klass in reversed(cls.__mro__):
        if klass is Signature or not issubclass(klass, Signature):
            continue
        for name, value in vars(klass).items():
            if isinstance(value, FieldDeclaration):
                declared[name] = (value, klass)
        for name in inspect.get_annotations(klass):
            annotated[name] = klass
    stray = [n for n in annotated if n not in declared and not n.startswith("_")]
    if stray:
        raise SignatureError(
            f"{cls.__name__}: annotated attribute(s) {', '.join(stray)} have no InputField() or "
            "OutputField(); declare each field as `name: type = InputField(desc=...)`",
            field=stray[0],
        )
    if not declared:
        return None  # an abstract base of other class signatures
    try:
        hints = typing.get_type_hints(cls, localns=fieldtypes.registered_types())
    except Exception as exc:
        raise SignatureError(
            f"{cls.__name__}: cannot resolve field annotations ({exc}); import the types used "
            "or register models with register_type()"
        ) from None
    inputs: list[SignatureField] = []
    outputs: list[SignatureField] = []
    for name, (decl, _) in declared.items():
        try:
            annotation = fieldtypes.normalize(hints.get(name, str))
        except fieldtypes.UnsupportedTypeError as exc:
            raise SignatureError(f"{cls.__name__}: field {name!r}: {exc}", field=name) from None
        f = SignatureField(name, annotation, decl.description, decl.default, dict(decl.constraints))
        (inputs if decl.kind == "input" else outputs).append(f)
    doc = cls.__dict__.get("__doc__")
    instructions = inspect.cleandoc(doc) if isinstance(doc, str) else ""
    if not inputs or not outputs:
        # A base class may declare one side for subclasses to complete: fail only when used.
        side = "input" if not inputs else "output"
        return SignatureError(
            f"{cls.__name__}: a signature needs at least one {side} field; declare one with "
            f"{side.capitalize()}Field()"
        )
    try:
        _check_fields(tuple(inputs), tuple(outputs))
    except SignatureError as exc:
        raise SignatureError(f"{cls.__name__}: {exc.message}", field=exc.field) from None
    return Signature._trusted(tuple(inputs), tuple(outputs), instructions)


# -- create_signature --------------------------------------------------------------------------


@functools.lru_cache(maxsize=2048)
def _from_string(
    spec: str,
    instructions: str | None,
    types_key: tuple[tuple[str, type], ...] | None,
    registry_version: int,
) -> Signature:
    types = dict(types_key) if types_key is not None else None
    parsed = parse_spec(spec, types)
    text = instructions if instructions is not None else (parsed.instructions or "")
    return Signature._trusted(parsed.inputs, parsed.outputs, text)


def create_signature(
    spec: str | Signature | type[Signature],
    *,
    instructions: str | None = None,
    types: Mapping[str, type] | None = None,
) -> Signature:
    """The `Signature` for a spec string, a `Signature`, or a `class X(Signature)`.

    `instructions` replaces the spec's own. `types` maps names to pydantic models for this call
    (over the `register_type` registry). Repeated identical calls return the cached value.
    """
    if instructions is not None and not isinstance(instructions, str):
        raise TypeError(f"instructions must be a string, got {type(instructions).__name__}")
    if isinstance(spec, str):
        types_key = None
        if types:
            for name, model in types.items():
                if not (isinstance(model, type) and issubclass(model, BaseModel)):
                    raise TypeError(
                        f"types[{name!r}] must be a pydantic BaseModel subclass, got {model!r}"
                    )
            types_key = tuple(sorted(types.items()))
        return _from_string(spec, instructions, types_key, fieldtypes.registry_version())
    if isinstance(spec, Signature):
        sig = spec
    elif isinstance(spec, type) and issubclass(spec, Signature):
        sig = _declared(spec)
    else:
        raise TypeError(
            "create_signature expects a spec string such as 'question: str -> answer: str', "
            f"a Signature, or a Signature subclass; got {type(spec).__name__}"
        )
    return sig if instructions is None else sig.with_instructions(instructions)
