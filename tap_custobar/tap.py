"""TapCustobar: settings, the shared HTTP session and the stream list."""

from __future__ import annotations

import logging
import signal
import sys
import typing as t
from functools import cached_property

import click
from singer_sdk import Tap
from singer_sdk.configuration._dict_config import parse_environment_config
from singer_sdk.exceptions import ConfigValidationError, FatalAPIError
from singer_sdk.helpers._classproperty import classproperty
from singer_sdk.tap_base import CliTestOptionValue

from tap_custobar.client import CustobarStream
from tap_custobar.connection_test import passed_message
from tap_custobar.discovery import TenantUnreadableError, discovery_failure, extend_schema
from tap_custobar.http import CustobarSession
from tap_custobar.interrupts import OUTPUT_GUARD, Interrupted, interrupted_message
from tap_custobar.settings import (
    CONFIG_SCHEMA,
    DEFAULT_USER_AGENT,
    Settings,
    as_text_schema,
    check_settings,
    env_values,
    undocumented_event_types,
    unknown_setting_warnings,
)
from tap_custobar.streams import CustomersStream, EventsStream, ProductsStream, SalesStream
from tap_custobar.writer import CustobarWriter

if t.TYPE_CHECKING:
    from types import FrameType

    from singer_sdk import Stream

STREAM_TYPES = (CustomersStream, EventsStream, ProductsStream, SalesStream)
DISCOVERY_SAMPLE_SIZE = 500


class TapCustobar(Tap):
    """Singer tap for Custobar's data API."""

    name = "tap-custobar"
    config_jsonschema = CONFIG_SCHEMA
    message_writer_class = CustobarWriter
    default_user_agent = DEFAULT_USER_AGENT
    config_errors: t.ClassVar[list[str]] = []

    @classproperty
    def _env_var_config(cls) -> dict[str, t.Any]:
        # --config=ENV: the SDK reads numbers as text ("'0.5' is not of type 'number'").
        schema = cls.config_jsonschema
        cls.append_builtin_config(schema)
        raw = parse_environment_config(as_text_schema(schema), cls._env_var_prefix)
        return env_values(raw, schema)

    def _validate_config(self, *, raise_errors: bool = True) -> list[str]:
        known = {"properties": dict(self.config_jsonschema["properties"])}
        self.append_builtin_config(known)  # stream_maps, flattening_enabled...: the SDK's own
        for warning in unknown_setting_warnings(self.config, known):
            self.logger.warning(warning)
        errors = super()._validate_config(raise_errors=False)
        if not errors:
            _, errors = check_settings(self.config)
        errors = [redact(error, self.config) for error in errors]
        if errors:
            TapCustobar.config_errors = errors  # for main()'s last line: the SDK CLI swallows them
        if errors and raise_errors:
            raise ConfigValidationError(
                "Invalid tap-custobar configuration: " + " ".join(errors),
                errors=errors,
                schema=self.config_jsonschema,
            )
        return errors

    @cached_property
    def settings(self) -> Settings:
        settings, errors = check_settings(self.config)
        if settings is None:
            raise ConfigValidationError(
                "Invalid tap-custobar configuration: " + " ".join(errors), errors=errors
            )
        if self.config.get("base_url") and self.config.get("company"):
            self.logger.info(
                "Both base_url and company are set: using base_url %s", settings.origin
            )
        for name in undocumented_event_types(settings.event_types):
            self.logger.warning(
                "event_types: %s is not a documented Custobar event type; reading it anyway", name
            )
        return settings

    @cached_property
    def session(self) -> CustobarSession:
        return CustobarSession(
            self.settings.origin, float(self.config.get("min_request_interval", 1.0))
        )

    def _handle_termination(self, signum: int, frame: FrameType | None) -> None:
        # SIGINT / SIGTERM: not the SDK's "one more STATE, exit 0" (see interrupts.py).
        OUTPUT_GUARD.handle(signum, frame)

    @classmethod
    def cb_test(cls, ctx: click.Context, param: click.Option, value: str) -> None:
        # The SDK ends a passing --test with no word of its own (run_connection_test is final).
        try:
            super().cb_test(ctx, param, value)
        except click.exceptions.Exit as done:
            if value == CliTestOptionValue.All.value and done.exit_code == 0:
                print(passed_message(stream.name for stream in STREAM_TYPES), file=sys.stderr)
            raise

    def run_discovery(self) -> str:
        self._discovering = True
        return super().run_discovery()

    def discover_streams(self) -> t.Sequence[Stream]:
        streams: list[CustobarStream] = [stream_type(tap=self) for stream_type in STREAM_TYPES]
        if not getattr(self, "_discovering", False):
            return streams  # a sync: the catalog (or the built-in schema) decides
        if not self.config.get("discover_custom_fields", True):
            self.logger.info("discover_custom_fields is off: the catalog has the built-in fields")
            return streams
        discovered: list[Stream] = []
        for stream in streams:
            try:
                discovered.append(self.with_custom_fields(stream))
            except FatalAPIError as exc:
                # A catalog without the tenant's fields would be cached and silently drop
                # them from every later sync: no catalog at all, and why.
                raise TenantUnreadableError(discovery_failure(exc)) from None
        return discovered

    def with_custom_fields(self, stream: CustobarStream) -> CustobarStream:
        names, samples = stream.sample(DISCOVERY_SAMPLE_SIZE)
        schema, added = extend_schema(stream.schema, names, samples)
        if added:
            self.logger.info(
                "%s: discovered %d field(s) beyond the built-in schema: %s",
                stream.name,
                len(added),
                ", ".join(added),
            )
        return type(stream)(tap=self, schema=schema)


def redact(text: str, config: t.Mapping[str, t.Any]) -> str:
    """Remove the token from a message (JSON schema errors quote offending values)."""
    token = str(config.get("api_token") or "")
    for secret in (token, token.strip()):  # as given, and as sent (whitespace stripped)
        if len(secret) >= 4:
            text = text.replace(secret, "<redacted>")
    return text


def main() -> None:
    """Console entry point: a failure ends with one plain sentence on stderr, exit code 1."""
    try:
        # Without standalone mode click returns ctx.exit() codes instead of exiting.
        code = TapCustobar.cli(standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except Interrupted as exc:
        print(exc.message, file=sys.stderr)
        sys.exit(exc.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt):
        print(interrupted_message(signal.SIGINT), file=sys.stderr)
        sys.exit(130)
    except Exception as exc:
        if not isinstance(exc, (ConfigValidationError, FatalAPIError)):
            logging.getLogger(TapCustobar.name).error("Unexpected failure", exc_info=exc)
        message = " ".join(str(exc).split()) or exc.__class__.__name__
        print(f"tap-custobar: error: {message}", file=sys.stderr)
        sys.exit(1)
    if isinstance(code, int) and code:
        if TapCustobar.config_errors:
            print(
                "tap-custobar: error: invalid configuration: "
                + " ".join(TapCustobar.config_errors),
                file=sys.stderr,
            )
        sys.exit(code)


if __name__ == "__main__":
    main()
