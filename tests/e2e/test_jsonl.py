"""`meltano run tap-custobar target-jsonl` against the sandbox: the files hold the sandbox."""

from __future__ import annotations

from tests.e2e.expected import (
    STREAMS,
    builtin_properties,
    compare,
    datetime_properties,
    expected_records,
)
from tests.e2e.pipeline import checkout_system_files, jsonl_env, read_jsonl, tap_env
from tests.expected import by_key


def mixed_kind_fields(records: list[dict]) -> set[str]:
    kinds: dict[str, set[str]] = {}
    for record in records:
        for name, value in record.items():
            if value is not None:
                kind = "number" if type(value) in (int, float) else type(value).__name__
                kinds.setdefault(name, set()).add(kind)
    return {name for name, found in kinds.items() if len(found) > 1}


def test_jsonl_files_hold_the_sandbox(meltano, sandbox, tmp_path, state_suffix):
    out = tmp_path / "output"
    checkout_before = checkout_system_files()
    meltano.run_pipeline(
        "target-jsonl", env={**tap_env(sandbox), **jsonl_env(out)}, state_suffix=state_suffix
    )
    # The run kept its state in the test's own project root; the checkout's system database,
    # state and .meltano/run/ files are untouched.
    states = meltano.ok("state", "list").stdout.split()
    assert states == [f"sandbox:tap-custobar-to-target-jsonl:{state_suffix}"]
    assert checkout_system_files() == checkout_before
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{s}.jsonl" for s in STREAMS)

    for stream in STREAMS:
        records = read_jsonl(out, stream)
        loaded = by_key(stream, records)  # fails on a key written twice
        expected = expected_records(stream, sandbox.records(stream))
        assert len(records) == len(expected)

        fields = set(builtin_properties(stream)).union(*(record.keys() for record in records))
        # Every field the sandbox sends arrives (custom fields are discovered).
        dropped = set().union(*sandbox.records(stream)) - fields
        assert not dropped, f"{stream}: fields never written: {sorted(dropped)}"
        # A custom field with values of several JSON kinds is a string field: other values
        # arrive as their JSON text (DESIGN §2 "Custom fields").
        mixed = mixed_kind_fields(sandbox.records(stream))
        problems = compare(stream, expected, loaded, fields, text_fields=mixed)
        assert not problems, "\n".join(problems)

        # Date-times leave the tap in UTC with a Z (DESIGN §2), whatever offset Custobar used.
        for name in datetime_properties(stream):
            values = [record[name] for record in records if record.get(name) is not None]
            assert values, f"{stream}.{name}: no values to check"
            bad = [value for value in values if not value.endswith("Z")]
            assert not bad, f"{stream}.{name} not in UTC with Z: {bad[:5]}"
