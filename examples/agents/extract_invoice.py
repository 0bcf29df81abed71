"""One model call with structured output: fields of an invoice e-mail, as a pydantic model.

    python examples/agents/extract_invoice.py

The reply is validated against `Invoice`; an invalid reply is sent back with the validation
errors (a re-ask), at most twice, each attempt its own durable step ("extract",
"extract:reask-1", ...). Offline, a scripted fake provider reads the e-mail with regular
expressions and, on its first try, writes the currency as a symbol, so the re-ask shows. With
OPENAI_API_KEY (and/or OPENAI_BASE_URL) set, a real model does the extraction (OPENAI_MODEL,
gpt-4o-mini by default).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from datetime import date
from typing import Any

import pydantic

import inferpipe as ip
from inferpipe.llm import ChatRequest, FakeProvider, Message, ScriptedReply
from inferpipe.llm import step as llm_step
from inferpipe.testing import Harness

EMAIL = """\
From: billing@roastworks.example
Subject: Invoice RW-2291

Hello, please find our invoice RW-2291 for your October order:
  2 x Ethiopia Guji 1kg at 38.50
  1 x Descaler pack at 12.00
Total due: 89.00 EUR, payable by 2024-11-30.
Roastworks GmbH
"""


class LineItem(pydantic.BaseModel):
    description: str
    quantity: int = pydantic.Field(ge=1)
    unit_price: float


class Invoice(pydantic.BaseModel):
    """The fields of an invoice."""

    vendor: str
    invoice_number: str
    currency: str = pydantic.Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code, e.g. EUR")
    total: float
    due_date: date
    line_items: list[LineItem]


def scripted_model(request: ChatRequest) -> ScriptedReply:
    """A regex "model": reads the e-mail; writes "€" for the currency until told the format."""
    text = next(m.content or "" for m in request.messages if m.role == "user")
    reasked = any("does not match" in (m.content or "") for m in request.messages[2:])
    total = re.search(r"Total due: ([\d.]+) ([A-Z]{3})", text)
    due = re.search(r"payable by (\d{4}-\d{2}-\d{2})", text)
    number = re.search(r"invoice ([A-Z]+-\d+)", text)
    vendor = text.strip().splitlines()[-1]
    items = [
        {"description": d.strip(), "quantity": int(q), "unit_price": float(p)}
        for q, d, p in re.findall(r"(\d+) x (.+?) at ([\d.]+)", text)
    ]
    invoice: dict[str, Any] = {
        "vendor": vendor,
        "invoice_number": number[1] if number else "",
        "currency": (total[2] if total else "") if reasked else "€",
        "total": float(total[1]) if total else 0.0,
        "due_date": due[1] if due else None,
        "line_items": items,
    }
    return ScriptedReply(content=json.dumps(invoice))


online = bool(os.environ.get("OPENAI_API_KEY") or os.environ.get("OPENAI_BASE_URL"))
MODEL = f"openai/{os.environ.get('OPENAI_MODEL', 'gpt-4o-mini')}" if online else "fake/extractor"
registry = llm_step.registry_from_env(
    fake=FakeProvider(scripted_model, priced_as="openai/gpt-4o-mini")
)

app = ip.App("extraction")


@app.function(id="extract-invoice", trigger=ip.on_event("billing/email.received"))
async def extract_invoice(ctx: ip.Context) -> dict[str, Any]:
    """Extract the invoice of an e-mail (one structured model call)."""
    reply = await llm_step.chat(
        ctx,
        "extract",
        model=MODEL,
        messages=[
            Message.system("Extract the invoice from the e-mail. Reply with JSON only."),
            Message.user(ctx.event.data["text"]),
        ],
        response_format=Invoice,
        registry=registry,
        temperature=0,
    )
    assert reply.parsed is not None
    return {
        "invoice": reply.parsed.model_dump(mode="json"),
        "calls": len(reply.attempts),
        "usage": reply.usage.model_dump() if reply.usage else None,
        "cost_usd": reply.cost.amount_usd,
    }


async def main() -> None:
    print(f"model: {MODEL}")
    async with Harness(app) as h:
        run_id = await h.invoke("extract-invoice", {"text": EMAIL})
        run = await h.settle(run_id)
        assert run is not None
        for step in await h.steps(run_id):
            usage = step.meta.get("usage") or {}
            print(
                f"  step {step.key:<18} {step.status.value:<10} tokens "
                f"{usage.get('input_tokens')}/{usage.get('output_tokens')} "
                f"cost {step.meta.get('cost_usd')}"
            )
        if run.status is ip.RunStatus.COMPLETED:
            print(json.dumps(run.output, indent=2))
        else:
            print(f"run {run.status.value}: {run.error}")
    await registry.aclose()


if __name__ == "__main__":
    asyncio.run(main())
