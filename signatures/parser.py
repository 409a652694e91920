"""Tokenizer and recursive-descent parser for string signatures.

Grammar (whitespace between tokens is ignored)::

    spec        := [STRING] fields "->" fields
    fields      := field ("," field)*
    field       := NAME [":" type] [constraints] ["=" value] [STRING]
    type        := primary ("|" primary)*
    primary     := "None" | NAME ["[" args "]"]
    args        := arg ("," arg)* [","]            # arg: type, literal value, "..." or "()"
    constraints := "(" NAME "=" value ("," NAME "=" value)* ")"
    value       := STRING | NUMBER | "True" | "False" | "None"
                 | "[" [value ("," value)*] "]" | "{" [STRING ":" value ("," ...)*] "}"

The leading STRING is the instructions; the STRING after a field is its description. Strings
use Python literal syntax ('...' or "..." with backslash escapes). Every error is a
`SignatureError` pointing at the offending token.
"""

from __future__ import annotations

import ast
import difflib
import keyword
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, NoReturn

from kaizen.errors import SignatureError
from kaizen.missing import MISSING

from .fields import SignatureField, constraint_problem
from .fieldtypes import (
    CONTAINERS,
    SCALARS,
    known_type_names,
    lookup_model,
    make_union,
)

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<arrow>->)
  | (?P<ellipsis>\.\.\.)
  | (?P<number>-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\w*)
  | (?P<name>[^\W\d]\w*)
  | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<punct>[:,\[\]()|={}])
  | (?P<error>.)
    """,
    re.VERBOSE,
)

_NUMBER = re.compile(r"-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_CLOSERS = {"[": "]", "(": ")", "{": "}"}
_MAX_DEPTH = 32  # brackets nested deeper than this are refused rather than recursed into
_HINTS = {
    "string": "str",
    "integer": "int",
    "number": "float",
    "boolean": "bool",
    "double": "float",
}


class Token(NamedTuple):
    kind: str  # arrow, ellipsis, number, name, string, punct, end
    text: str
    pos: int


@dataclass(frozen=True, slots=True)
class ParsedSpec:
    instructions: str | None
    inputs: tuple[SignatureField, ...]
    outputs: tuple[SignatureField, ...]


def tokenize(spec: str) -> list[Token]:
    """Split `spec` into tokens, or raise `SignatureError` at the first character that fits none."""
    tokens: list[Token] = []
    for match in _TOKEN.finditer(spec):
        kind = match.lastgroup
        if kind == "ws":
            continue
        pos = match.start()
        if kind == "error":
            char = spec[pos]
            if char in "\"'":
                raise SignatureError("unterminated string literal", spec=spec, position=pos)
            raise SignatureError(f"unexpected character {char!r}", spec=spec, position=pos)
        tokens.append(Token(kind, match.group(), pos))  # type: ignore[arg-type]
    tokens.append(Token("end", "", len(spec)))
    return tokens


def parse_spec(spec: str, types: Mapping[str, type] | None = None) -> ParsedSpec:
    """Parse a string signature into fields with resolved, normalized types."""
    return _Parser(spec, types).parse()


class _Parser:
    def __init__(self, spec: str, types: Mapping[str, type] | None) -> None:
        self.spec = spec
        self.types = types
        self.tokens = tokenize(spec)
        self.index = 0
        self.field_name: str | None = None  # the field being parsed, for error messages
        self.depth = 0

    # -- token helpers -------------------------------------------------------------------------

    @property
    def tok(self) -> Token:
        return self.tokens[self.index]

    def advance(self) -> Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def at(self, text: str) -> bool:
        token = self.tokens[self.index]
        return token.text == text and token.kind in ("punct", "arrow", "ellipsis")

    def fail(self, message: str, position: int | None = None) -> NoReturn:
        pos = self.tok.pos if position is None else position
        raise SignatureError(message, spec=self.spec, position=pos, field=self.field_name)

    def describe(self, token: Token) -> str:
        return "the end of the signature" if token.kind == "end" else repr(token.text)

    def expect_close(self, opener: Token) -> None:
        closer = _CLOSERS[opener.text]
        if self.at(closer):
            self.advance()
            return
        if self.tok.kind == "end" or self.at("->"):
            self.fail(f"unbalanced {opener.text!r}: no matching {closer!r}", opener.pos)
        self.fail(f"expected ',' or {closer!r}, found {self.describe(self.tok)}")

    # -- grammar -------------------------------------------------------------------------------

    def parse(self) -> ParsedSpec:
        if self.tok.kind == "end":
            self.fail(
                "the signature is empty; write it as `inputs -> outputs`, e.g. `question -> answer`"
            )
        instructions = None
        if self.tok.kind == "string":
            instructions = self.string_value(self.advance())
        if self.at("->"):
            self.fail("no input fields before '->'; a signature needs at least one input")
        inputs = self.fields("input")
        if not self.at("->"):
            if self.tok.kind == "end":
                self.fail("missing '->' between the input and output fields")
            self.fail(f"expected ',' or '->' after a field, found {self.describe(self.tok)}")
        self.advance()
        if self.tok.kind == "end":
            self.fail("no output fields after '->'; a signature needs at least one output")
        outputs = self.fields("output")
        if self.at("->"):
            self.fail("a signature has exactly one '->'; found another here")
        if self.tok.kind != "end":
            self.fail(f"expected ',' after a field, found {self.describe(self.tok)}")
        self.check_duplicates(inputs, outputs)
        return ParsedSpec(
            instructions,
            tuple(f for f, _ in inputs),
            tuple(f for f, _ in outputs),
        )

    def fields(self, side: str) -> list[tuple[SignatureField, int]]:
        result = [self.field(side)]
        while self.at(","):
            self.advance()
            result.append(self.field(side))
        return result

    def field(self, side: str) -> tuple[SignatureField, int]:
        self.field_name = None
        token = self.tok
        if self.at(",") or self.at("->") or token.kind == "end":
            self.fail(f"empty {side} field: expected a field name")
        if token.kind != "name" or not token.text.isidentifier():
            self.fail(f"{token.text!r} is not a valid field name (use a Python identifier)")
        if keyword.iskeyword(token.text):
            self.fail(f"{token.text!r} is a Python keyword and cannot be a field name")
        if token.text.startswith("_"):
            self.fail(f"field name {token.text!r} must not start with '_'")
        self.advance()
        name = token.text
        self.field_name = name
        annotation: Any = str
        if self.at(":"):
            self.advance()
            type_pos = self.tok.pos
            annotation = self.type_expr()
        else:
            type_pos = token.pos
        constraints: dict[str, Any] = {}
        if self.at("("):
            constraints = self.constraints()
        default: Any = MISSING
        if self.at("="):
            if side == "output":
                self.fail(f"output field {name!r} cannot have a default")
            self.advance()
            default = self.value()
        description = ""
        if self.tok.kind == "string":
            description = self.string_value(self.advance())
        problem = constraint_problem(annotation, constraints)
        if problem is not None:
            self.fail(f"field {name!r}: {problem}", type_pos)
        return SignatureField(name, annotation, description, default, constraints), token.pos

    def check_duplicates(
        self,
        inputs: list[tuple[SignatureField, int]],
        outputs: list[tuple[SignatureField, int]],
    ) -> None:
        seen: dict[str, str] = {}
        for side, fields in (("input", inputs), ("output", outputs)):
            for f, pos in fields:
                first = seen.get(f.name)
                if first is not None:
                    where = (
                        "twice among the inputs"
                        if first == side == "input"
                        else (
                            "twice among the outputs"
                            if first == side
                            else "as both input and output"
                        )
                    )
                    raise SignatureError(
                        f"field {f.name!r} appears {where}; field names must be unique",
                        spec=self.spec,
                        position=pos,
                        field=f.name,
                    )
                seen[f.name] = side

    # -- types ---------------------------------------------------------------------------------

    def nest(self) -> None:
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            self.fail(f"brackets nested deeper than {_MAX_DEPTH} levels")

    def type_expr(self) -> Any:
        self.nest()
        members = [self.primary()]
        while self.at("|"):
            self.advance()
            members.append(self.primary())
        self.depth -= 1
        return make_union(members)

    def primary(self) -> Any:
        token = self.tok
        if token.kind != "name":
            self.fail(f"expected a type, found {self.describe(token)}")
        self.advance()
        name = token.text
        if name in ("Literal", "Optional", "Union"):
            if not self.at("["):
                self.fail(f"{name} needs arguments in brackets, e.g. {name}[...]", token.pos)
            opener = self.advance()
            if name == "Literal":
                values = self.literal_args(opener)
                return Literal[tuple(values)]
            args = self.type_args(opener)
            if name == "Optional":
                if len(args) != 1:
                    self.fail(f"Optional takes exactly one type, got {len(args)}", token.pos)
                return make_union([args[0], type(None)])
            return make_union(args)
        if name in CONTAINERS:
            origin = CONTAINERS[name]
            if not self.at("["):
                return origin
            opener = self.advance()
            if origin is tuple:
                return self.tuple_args(opener)
            args = self.type_args(opener)
            expected = 2 if origin is dict else 1
            if len(args) != expected:
                self.fail(
                    f"{name}[...] takes {expected} type argument(s), got {len(args)}", token.pos
                )
            return origin[tuple(args)]  # type: ignore[index]
        if name in SCALARS:
            resolved = SCALARS[name]
        else:
            model = lookup_model(name, self.types)
            if model is None:
                self.unknown_type(token)
            resolved = model
        if self.at("["):
            self.fail(f"type {name!r} takes no arguments")
        return resolved

    def unknown_type(self, token: Token) -> NoReturn:
        known = known_type_names(self.types)
        close = difflib.get_close_matches(token.text, known, n=3, cutoff=0.6)
        hint = _HINTS.get(token.text.lower())
        if hint and hint not in close:
            close.insert(0, hint)
        suggestion = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        self.fail(
            f"unknown type {token.text!r}{suggestion} (pydantic models must be registered "
            "with register_type() or passed in types={...})",
            token.pos,
        )

    def type_args(self, opener: Token) -> list[Any]:
        return self.rest_of_args(opener, self.type_expr(), self.type_expr)

    def rest_of_args(self, opener: Token, first: Any, parse_item: Callable[[], Any]) -> list[Any]:
        """`first`, then `, item` while there are commas (a trailing one allowed), then `]`."""
        items = [first]
        while self.at(","):
            self.advance()
            if self.at("]"):
                break
            items.append(parse_item())
        self.expect_close(opener)
        return items

    def tuple_args(self, opener: Token) -> Any:
        if self.at("("):
            paren = self.advance()
            self.expect_close(paren)
            self.expect_close(opener)
            return tuple[()]
        first = self.type_expr()
        if self.at(",") and self.tokens[self.index + 1].kind == "ellipsis":
            self.advance()
            self.advance()
            self.expect_close(opener)
            return tuple[first, ...]  # type: ignore[valid-type]
        args = self.rest_of_args(opener, first, self.type_expr)
        return tuple[tuple(args)]  # type: ignore[misc]

    def literal_args(self, opener: Token) -> list[Any]:
        return self.rest_of_args(opener, self.literal_value(), self.literal_value)

    def literal_value(self) -> Any:
        token = self.tok
        value = self.value()
        if isinstance(value, float | list | dict):
            self.fail("Literal values must be strings, integers, True, False or None", token.pos)
        return value

    # -- values --------------------------------------------------------------------------------

    def constraints(self) -> dict[str, Any]:
        opener = self.advance()
        result: dict[str, Any] = {}
        while True:
            token = self.tok
            if token.kind != "name":
                self.fail(f"expected a constraint name such as ge=0, found {self.describe(token)}")
            self.advance()
            if token.text in result:
                self.fail(f"constraint {token.text!r} is given twice", token.pos)
            if not self.at("="):
                self.fail(f"expected '=' after constraint {token.text!r}")
            self.advance()
            result[token.text] = self.value()
            if not self.at(","):
                break
            self.advance()
        self.expect_close(opener)
        return result

    def value(self) -> Any:
        self.nest()
        result = self.plain_value()
        self.depth -= 1
        return result

    def plain_value(self) -> Any:
        token = self.tok
        if token.kind == "string":
            self.advance()
            return self.string_value(token)
        if token.kind == "number":
            self.advance()
            return self.number_value(token)
        if token.kind == "name" and token.text in ("True", "False", "None"):
            self.advance()
            return {"True": True, "False": False, "None": None}[token.text]
        if self.at("["):
            opener = self.advance()
            items: list[Any] = []
            while not self.at("]"):
                items.append(self.value())
                if not self.at(","):
                    break
                self.advance()
            self.expect_close(opener)
            return items
        if self.at("{"):
            opener = self.advance()
            mapping: dict[str, Any] = {}
            while not self.at("}"):
                key = self.tok
                if key.kind != "string":
                    self.fail(f"expected a string key, found {self.describe(key)}")
                self.advance()
                if not self.at(":"):
                    self.fail(f"expected ':' after a key, found {self.describe(self.tok)}")
                self.advance()
                mapping[self.string_value(key)] = self.value()
                if not self.at(","):
                    break
                self.advance()
            self.expect_close(opener)
            return mapping
        self.fail(
            f"expected a value (string, number, True, False, None, list or dict), "
            f"found {self.describe(token)}"
        )

    def number_value(self, token: Token) -> int | float:
        if not _NUMBER.fullmatch(token.text):
            self.fail(f"{token.text!r} is neither a number nor a valid name", token.pos)
        text = token.text
        if any(c in text for c in ".eE"):
            return float(text)
        return int(text)

    def string_value(self, token: Token) -> str:
        # token.text is exactly one plain string literal, so literal_eval only decodes escapes.
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                value = ast.literal_eval(token.text)
        except (SyntaxError, ValueError) as exc:
            reason = exc.msg if isinstance(exc, SyntaxError) else str(exc)
            self.fail(f"invalid escape in string literal ({reason})", token.pos)
        if not isinstance(value, str):  # pragma: no cover - the tokenizer admits only strings
            self.fail("expected a string literal", token.pos)
        return value
