"""SuperOffice follow-up ids name the tenant; the ids from before still parse as its own."""

from __future__ import annotations

import pytest

from sync.crm.superoffice import documents


@pytest.mark.parametrize(
    ("url", "context", "key"),
    [
        ("https://sod.superoffice.com/Cust12345", None, "cust12345"),
        ("https://sod.superoffice.com/Cust12345/", "Cust777", "cust777"),
        ("http://127.0.0.1:8080", None, "1270018080"),
    ],
)
def test_the_tenant_key_is_the_context_id_else_the_urls_last_part(
    url: str, context: str | None, key: str
) -> None:
    assert documents.tenant_key(url, context) == key


def test_two_tenants_name_the_same_rule_apart_and_old_ids_stay_readable() -> None:
    one, two = "cust1", "cust2"
    assert documents.followup_id_for(0, 7, one) != documents.followup_id_for(0, 7, two)
    assert documents.parse_followup_id("so-cust1-r7", one) == ("rule", 7)
    assert documents.parse_followup_id("so-cust1-a42", one) == ("row", 42)
    assert documents.parse_followup_id("so-cust1-r7", two) is None, "another tenant's"
    assert documents.parse_followup_id("so-r7", one) == ("rule", 7)
    assert documents.parse_followup_id("so-a42", two) == ("row", 42)
    assert documents.parse_followup_id("5d2e-thunderbird@example.com", one) is None
