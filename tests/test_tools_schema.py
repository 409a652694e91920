"""Tool schemas from every parameter form the peers accept, with the same values reaching the
function (`kaizen.tools.schema`): `Field` as a default and inside `Annotated`, `Annotated`
strings, Google / NumPy / Sphinx docstrings, partials, callable objects, bound methods,
`**kwargs`; `*args` refused. Issue 21 item 2."""

from __future__ import annotations

import asyncio
import functools
import string
from typing import Annotated, Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import Field

import kaizen
from kaizen.errors import ConfigError
from kaizen.testing import ScriptedModel
from kaizen.tools import Tool, ToolArgumentError
from kaizen.tools.schema import parse_docstring


def run_once(tool: Tool, arguments: dict[str, Any]) -> str | None:
    """Call `tool` once through an agent's loop; the text the model read."""
    model = ScriptedModel([ScriptedModel.tool_call(tool.name, arguments), {"answer": "ok"}])
    agent = kaizen.Agent("a", "question -> answer: str", {"model": model}, tools=[tool])
    [record] = agent.execute(question="?").tool_calls
    return record.output if record.error is None else f"ERROR {record.error}"


# -- Field and Annotated ---------------------------------------------------------------------


def price(
    amount: Annotated[float, Field(description="The amount.", gt=10, le=100)],
    quantity: int = Field(..., gt=10, le=100, description="How many."),
    discount: float = Field(default=5.0, ge=0),
    currency: Annotated[str, "An ISO 4217 code."] = "EUR",
) -> str:
    """Price an order."""
    return f"{amount} x {quantity} - {discount} {currency}"


def test_field_constraints_descriptions_required_and_defaults_reach_the_schema() -> None:
    properties = Tool(price).parameters["properties"]
    assert properties["amount"] == {
        "type": "number",
        "description": "The amount.",
        "exclusiveMinimum": 10,
        "maximum": 100,
    }
    assert properties["quantity"] == {
        "type": "integer",
        "description": "How many.",
        "exclusiveMinimum": 10,
        "maximum": 100,
    }
    assert properties["discount"] == {"type": "number", "default": 5.0, "minimum": 0}
    assert properties["currency"] == {
        "type": "string",
        "default": "EUR",
        "description": "An ISO 4217 code.",
    }
    assert Tool(price).parameters["required"] == ["amount", "quantity"]


def test_a_field_default_reaches_the_function_as_its_value() -> None:
    # before: the function got the FieldInfo object itself
    assert run_once(Tool(price), {"amount": 20, "quantity": 11}) == "20.0 x 11 - 5.0 EUR"


def test_a_required_field_and_every_constraint_are_enforced() -> None:
    with pytest.raises(ToolArgumentError) as caught:
        Tool(price).validate({"amount": 5, "discount": -1})
    assert caught.value.problems == [
        "amount: Input should be greater than 10 (got 5)",
        "quantity: missing (required)",
        "discount: Input should be greater than or equal to 0 (got -1)",
    ]
    assert "quantity: missing (required)" in (run_once(Tool(price), {"amount": 20}) or "")


def test_the_first_description_found_wins_field_then_annotated_string_then_docstring() -> None:
    def described(
        a: Annotated[int, Field(description="from Field")],
        b: Annotated[int, "from Annotated"],
        c: int,
        d: int = Field(0, description="from the default's Field"),
    ) -> int:
        """Sum.

        Args:
            a: from the docstring
            b: from the docstring
            c: from the docstring
            d: from the docstring
        """
        return a + b + c + d

    properties = Tool(described).parameters["properties"]
    assert [properties[k]["description"] for k in "abcd"] == [
        "from Field",
        "from Annotated",
        "from the docstring",
        "from the default's Field",
    ]


# -- docstrings ------------------------------------------------------------------------------


def google(city: str, days: int = 1) -> str:
    """Forecast the weather.

    Uses the national service.

    Args:
        city: The city,
            by its English name.
        days (int): How many days.

    Returns:
        The forecast.
    """
    return city


def numpy(city: str, days: int = 1) -> str:
    """Forecast the weather.

    Uses the national service.

    Parameters
    ----------
    city : str
        The city,
        by its English name.
    days : int
        How many days.

    Returns
    -------
    str
        The forecast.
    """
    return city


def sphinx(city: str, days: int = 1) -> str:
    """Forecast the weather.

    Uses the national service.

    :param city: The city,
        by its English name.
    :param days: How many days.
    :returns: The forecast.
    """
    return city


@pytest.mark.parametrize("func", [google, numpy, sphinx], ids=lambda f: f.__name__)
def test_docstrings_in_every_style_give_the_description_and_each_parameters(func: Any) -> None:
    made = Tool(func)
    assert made.description == "Forecast the weather.\n\nUses the national service."
    properties = made.parameters["properties"]
    assert properties["city"]["description"] == "The city, by its English name."
    assert properties["days"]["description"] == "How many days."
    for leak in (":param", "----", "Parameters", "Args:", "Returns"):
        assert leak not in made.description


names = st.text(string.ascii_lowercase + "_", min_size=1, max_size=12).filter(lambda n: n[0] != "_")
texts = st.text(string.ascii_letters + " ,.", min_size=1, max_size=40).map(str.strip).filter(bool)


@given(st.dictionaries(names, texts, min_size=1, max_size=5), texts, st.sampled_from("gns"))
def test_docstrings_round_trip_in_every_style(
    args: dict[str, str], summary: str, style: str
) -> None:
    if style == "g":
        lines = [summary, "", "Args:", *(f"    {n}: {t}" for n, t in args.items())]
        lines += ["", "Returns:", "    something"]
    elif style == "n":
        lines = [summary, "", "Parameters", "----------"]
        for n, t in args.items():
            lines += [f"{n} : int", f"    {t}"]
    else:
        lines = [summary, "", *(f":param {n}: {t}" for n, t in args.items())]
    parsed_summary, parsed = parse_docstring("\n".join(lines))
    assert parsed_summary == summary
    assert parsed == args


# -- every callable --------------------------------------------------------------------------


def convert(amount: float, rate: float, *, rounding: int = 2) -> float:
    """Convert an amount.

    Args:
        amount: The amount.
        rate: The rate.
        rounding: Digits kept.
    """
    return round(amount * rate, rounding)


def test_a_partial_is_a_tool_without_the_arguments_it_fixes() -> None:
    made = Tool(functools.partial(convert, rate=2.0), name="double")
    assert made.description == "Convert an amount."
    assert set(made.parameters["properties"]) == {"amount", "rate", "rounding"}
    assert made.parameters["required"] == ["amount"]  # rate keeps the partial's value
    assert run_once(made, {"amount": 1.234}) == "2.47"
    fixed = Tool(functools.partial(convert, 3.0), name="three")
    assert set(fixed.parameters["properties"]) == {"rate", "rounding"}
    assert run_once(fixed, {"rate": 2}) == "6.0"


def test_a_partial_without_a_name_is_refused_asking_for_one() -> None:
    with pytest.raises(ConfigError, match=r"\(a functools\.partial\); pass name="):
        Tool(functools.partial(convert, rate=2.0))


class Converter:
    """Converts amounts at a fixed rate."""

    def __init__(self, rate: float) -> None:
        self.rate = rate

    def __call__(self, amount: float) -> float:
        """Convert an amount.

        Args:
            amount: The amount.
        """
        return amount * self.rate

    def inverse(self, amount: float) -> float:
        """Convert back.

        Args:
            amount: The converted amount.
        """
        return amount / self.rate


class AsyncConverter:
    """Converts amounts, asynchronously."""

    async def __call__(self, amount: float) -> float:
        await asyncio.sleep(0)
        return amount * 3


def test_a_callable_object_is_a_tool_named_and_described_by_its_class() -> None:
    assert Tool(Converter(2.0)).name == "Converter"
    made = Tool(Converter(2.0), name="convert")
    assert made.description == "Converts amounts at a fixed rate."  # its class's docstring
    assert made.parameters["properties"] == {
        "amount": {"type": "number", "description": "The amount."}
    }
    assert not made.is_async
    assert run_once(made, {"amount": 2}) == "4.0"


def test_an_object_with_an_async_call_is_an_async_tool_described_by_its_class() -> None:
    made = Tool(AsyncConverter(), name="convert")
    assert made.is_async and made.description == "Converts amounts, asynchronously."
    assert run_once(made, {"amount": 2}) == "6.0"
    assert made.invoke({"amount": 1}) == 3.0


def test_a_bound_method_is_a_tool_without_self() -> None:
    made = Tool(Converter(4.0).inverse)
    assert made.name == "inverse" and made.description == "Convert back."
    assert list(made.parameters["properties"]) == ["amount"]
    assert run_once(made, {"amount": 2}) == "0.5"


def test_collect_tools_takes_callable_objects_with_their_name() -> None:
    agent = kaizen.Agent(
        "a",
        "question -> answer",
        {"model": ScriptedModel([{"answer": "x"}])},
        tools=[Tool(Converter(2), name="convert"), Converter(2).inverse],
    )
    assert sorted(t.name for t in agent.tools) == ["convert", "inverse"]


# -- *args and **kwargs ----------------------------------------------------------------------


def test_typed_kwargs_are_additional_properties_of_that_type_and_reach_the_function() -> None:
    def tally(label: str, **counts: int) -> str:
        """Tally counts."""
        return f"{label}: " + ", ".join(f"{k}={v}" for k, v in sorted(counts.items()))

    made = Tool(tally)
    assert made.parameters["additionalProperties"] == {"type": "integer"}
    assert made.parameters["required"] == ["label"]
    assert (
        run_once(made, {"label": "fruit", "apples": "3", "pears": 2}) == "fruit: apples=3, pears=2"
    )
    with pytest.raises(ToolArgumentError) as caught:
        made.validate({"apples": "many"})
    assert caught.value.problems == [
        "label: missing (required)",
        "apples: Input should be a valid integer, unable to parse string as an integer "
        "(got 'many')",
    ]


def test_untyped_kwargs_allow_any_other_argument() -> None:
    def anything(**options: Any) -> str:
        """Echo the options."""
        return ",".join(sorted(options))

    made = Tool(anything)
    assert made.parameters["additionalProperties"] is True
    assert run_once(made, {"b": [1], "a": {"x": 1}}) == "a,b"


def test_var_positional_parameters_are_refused_when_the_tool_is_made() -> None:
    def total(*numbers: int) -> int:
        """Add them."""
        return sum(numbers)

    with pytest.raises(ConfigError, match=r"tool 'total': \*numbers cannot be passed.*list"):
        Tool(total)


def test_without_kwargs_other_arguments_are_still_refused() -> None:
    with pytest.raises(ToolArgumentError, match="other: not a parameter of this tool"):
        Tool(google).validate({"city": "Oslo", "other": 1})
    assert Tool(google).parameters["additionalProperties"] is False
