"""docs/plan.md and docs/config.md against the models that read plans and configurations, and the example cart
configuration against the loader: a reference that has drifted from the code fails here."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from safety.config import HARD_LIMITS, LIMIT_FIELDS, CartConfig, LimitsConfig, load_config
from safety.plan import check_plan, default_genicular_plan, load_plan
from tests import docs_tables

EXAMPLES = docs_tables.ROOT / "docs" / "examples"
CART_EXAMPLE = EXAMPLES / "cart.toml"


@pytest.mark.parametrize("relative", sorted(docs_tables.DOCUMENTS))
def test_the_generated_tables_are_what_the_models_give(relative: str) -> None:
    text = (docs_tables.ROOT / relative).read_text(encoding="utf-8")
    assert docs_tables.expected(text, docs_tables.DOCUMENTS[relative]()) == text, (
        f"{relative} differs from the models: run python -m tests.docs_tables --write")


@pytest.mark.parametrize("model", [*(m for _, m in docs_tables.PLAN_TABLES), CartConfig, LimitsConfig],
                         ids=lambda model: model.__name__)
def test_every_field_says_what_it_means(model: type[BaseModel]) -> None:
    assert [name for name, field in model.model_fields.items() if not field.description] == []


def test_every_limit_is_a_configuration_key() -> None:
    assert tuple(LimitsConfig.model_fields) == LIMIT_FIELDS


def test_a_changed_model_is_caught() -> None:
    text = (docs_tables.ROOT / "docs" / "plan.md").read_text(encoding="utf-8")
    assert docs_tables.expected(text, [*docs_tables.plan_block(), "| `new_field` | number |"]) != text


def test_the_example_cart_configuration_loads_and_runs_the_example_plans() -> None:
    config = load_config(CART_EXAMPLE)
    assert config.generator_url is None, "the example runs the in-process simulator"
    limits = config.effective_limits
    assert limits != HARD_LIMITS, "the example shows limits tightened"
    check_plan(default_genicular_plan(), limits)  # `rfa run --config docs/examples/cart.toml --yes`
    for plan in sorted(EXAMPLES.glob("*.toml")):
        if plan != CART_EXAMPLE:
            assert load_plan(plan, limits).lesions


def test_the_example_plans_point_at_the_plan_reference() -> None:
    for plan in sorted(EXAMPLES.glob("*.toml")):
        assert ("docs/plan.md" if plan != CART_EXAMPLE else "docs/config.md") in plan.read_text(encoding="utf-8")


def test_the_check_command_passes_on_the_documents_as_committed() -> None:
    assert docs_tables.main([]) == 0
