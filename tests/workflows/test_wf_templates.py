from __future__ import annotations

import pytest

from inferpipe.workflows.errors import TemplateError, TemplateSecurityError
from inferpipe.workflows.templates import TemplateRenderer, render_template, template_context

CONTEXT = template_context(
    {"name": "Ada", "tags": ["a", "b"]},
    {"classify": {"label": "billing"}, "skipped": None},
)


def test_renders_input_and_upstream_outputs() -> None:
    text = render_template(
        "{{ input.name }}: {{ nodes.classify.output.label }} {{ input.tags | join(',') }}", CONTEXT
    )
    assert text == "Ada: billing a,b"


def test_skipped_nodes_read_as_none() -> None:
    assert render_template("{{ nodes.skipped.output or 'n/a' }}", CONTEXT) == "n/a"


def test_map_items_and_secrets_are_in_scope_when_given() -> None:
    context = template_context({}, {}, item={"text": "hi"}, index=2, secrets={"TOKEN": "s3cr3t"})
    assert render_template("{{ index }}:{{ item.text }}", context) == "2:hi"
    assert render_template("Bearer {{ secrets.TOKEN }}", context) == "Bearer s3cr3t"


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ input.__class__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ input.tags.append('x') }}",
        "{{ 'a' * 10000000 }}",
        "{{ 9 ** 999999 }}",
    ],
)
def test_sandbox_escapes_are_refused_clearly(source: str) -> None:
    with pytest.raises(TemplateSecurityError) as info:
        render_template(source, CONTEXT, where="node 'a' prompt")
    assert str(info.value).startswith("template in node 'a' prompt was refused by the sandbox")
    assert info.value.code == "template_unsafe"


def test_the_context_is_not_mutated() -> None:
    with pytest.raises(TemplateSecurityError):
        render_template("{{ input.tags.append('x') }}", CONTEXT)
    assert CONTEXT["input"]["tags"] == ["a", "b"]


def test_undefined_values_are_errors_not_blanks() -> None:
    with pytest.raises(TemplateError, match="undefined"):
        render_template("{{ input.missing }}", CONTEXT)
    with pytest.raises(TemplateError, match="undefined"):
        render_template("{{ nodes.nope.output }}", CONTEXT)


def test_syntax_and_runtime_errors_are_template_errors() -> None:
    with pytest.raises(TemplateError, match="does not parse"):
        render_template("{% for %}", CONTEXT)
    with pytest.raises(TemplateError, match="ZeroDivisionError"):
        render_template("{{ 1 / 0 }}", CONTEXT)


def test_output_size_is_bounded() -> None:
    renderer = TemplateRenderer(max_output_chars=10)
    with pytest.raises(TemplateError, match="the limit is 10"):
        renderer.render("{{ input.name * 5 }}", CONTEXT)


def test_json_bodies_render_their_string_leaves() -> None:
    renderer = TemplateRenderer()
    body = {"who": "{{ input.name }}", "n": 3, "tags": ["{{ input.tags[0] }}", None]}
    assert renderer.render_json(body, CONTEXT) == {"who": "Ada", "n": 3, "tags": ["a", None]}
