"""The project's own meltano.yml: the sandbox environment applies only when named."""

from __future__ import annotations

import json

from tests.sandbox import TEST_TOKEN


def test_company_set_by_the_user_is_what_a_plain_run_reads(meltano):
    env = {"TAP_CUSTOBAR_API_TOKEN": TEST_TOKEN}
    meltano.ok("config", "set", "tap-custobar", "company", "acme")
    config = json.loads(meltano.ok("config", "print", "tap-custobar", env=env).stdout)
    assert config["company"] == "acme"
    # The sandbox environment's loopback base_url (which would win over company) is not active.
    assert not config.get("base_url"), config.get("base_url")

    # Named, the sandbox environment still applies.
    sandbox = json.loads(
        meltano.ok("--environment=sandbox", "config", "print", "tap-custobar", env=env).stdout
    )
    assert sandbox["base_url"].startswith("http://127.0.0.1:")
