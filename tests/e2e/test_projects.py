"""The project's own meltano.yml: the sandbox environment applies only when named."""

from __future__ import annotations

import json

from tests.e2e.pipeline import Meltano

# `invoke --dump=config` prints the config file a run hands the tap, token included.
ENV = {"TAP_CUSTOBAR_API_TOKEN": "dump-only-token"}


def config_for_a_run(meltano: Meltano, *options: str) -> dict:
    """The config `meltano run` would give the tap (`meltano config print` ignores the default
    environment; invoke, like run, applies it)."""
    dumped = meltano.ok(*options, "invoke", "--no-install", "--dump=config", "tap-custobar", env=ENV)
    return json.loads(dumped.stdout)


def test_company_set_by_the_user_is_what_a_plain_run_reads(meltano):
    meltano.ok("config", "set", "tap-custobar", "company", "acme")
    config = config_for_a_run(meltano)
    assert config["company"] == "acme"
    # No loopback base_url (which would win over company) from the default environment.
    assert not config.get("base_url"), config.get("base_url")

    # Named, the sandbox environment still applies.
    sandbox = config_for_a_run(meltano, "--environment=sandbox")
    assert sandbox["base_url"] == "http://127.0.0.1:8765"
