"""TapCustobar: settings, the shared HTTP session, the stream list and discovery."""

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
from singer_sdk.tap_base import CliTestOptionValue

from tap_custobar import page_writer
from tap_custobar.connection_test import passed_message
from tap_custobar.discovery import TenantUnreadableError, discovery_failure, search_fields
from tap_custobar.http import CustobarSession
from tap_custobar.interrupts import OUTPUT_GUARD, Interrupted, interrupted_message
from tap_custobar.settings import (
    CONFIG_SCHEMA,
    DEFAULT_DISCOVERY_MAX_RECORDS,
    DEFAULT_USER_AGENT,
    MAX_PAGE_SIZE,
    Settings,
    as_text_schema,
    check_settings,
    env_values,
    numbers_from_text,
    schema_errors,
    undocumented_event_types,
    unknown_setting_warnings,
)
from tap_custobar.streams import CustomersStream, EventsStream, ProductsStream, SalesStream

if t.TYPE_CHECKING:
    from types import FrameType

    from singer_sdk import Stream

    from tap_custobar.client import CustobarStream

STREAM_TYPES = (CustomersStream, EventsStream, ProductsStream, SalesStream)


class TapCustobar(Tap):
    """Singer tap for Custobar's data API."""

    name = "tap-custobar"
    config_jsonschema = CONFIG_SCHEMA
    message_writer_class = page_writer.CustobarWriter
    default_user_agent = DEFAULT_USER_AGENT

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        self.discovering = False  # run_discovery: streams get the tenant's custom fields
        if isinstance(kwargs.get("config"), dict):  # what Meltano gives: numbers may be text
            kwargs["config"] = numbers_from_text(kwargs["config"], self.config_jsonschema)
        super().__init__(*args, **kwargs)

    @property
    def _env_var_config(self) -> dict[str, t.Any]:
        # --config=ENV: the SDK reads numbers as text ("'0.5' is not of type 'number'"), and
        # has no public hook for it; it reads this on the instance, while it is built.
        schema = self.config_jsonschema
        self.append_builtin_config(schema)
        prefix = f"{self.name.upper().replace('-', '_')}_"  # TAP_CUSTOBAR_, as the SDK names it
        raw = parse_environment_config(as_text_schema(schema), prefix)
        return env_values(raw, schema)

    def _validate_config(self, *, raise_errors: bool = True) -> list[str]:
        # The SDK's only config check, and no public hook in 0.54: its JSON-schema pass fills
        # in defaults; config_problems words what is wrong. Should the SDK rename it,
        # `settings` still refuses a bad config before the first request.
        super()._validate_config(raise_errors=False)
        errors = self.config_problems
        if errors and raise_errors:
            raise ConfigValidationError(
                "Invalid tap-custobar configuration: " + " ".join(errors),
                errors=errors,
                schema=self.config_jsonschema,
            )
        return errors

    @cached_property
    def config_problems(self) -> list[str]:
        """What is wrong with the config, each naming its setting and never the token: the
        JSON schema's errors, then what the schema cannot express (unless a setting has the
        wrong type). Unknown setting names are warned."""
        known = {"properties": dict(self.config_jsonschema["properties"])}
        self.append_builtin_config(known)  # stream_maps, flattening_enabled...: the SDK's own
        for warning in unknown_setting_warnings(self.config, known):
            self.logger.warning(warning)
        ranges, others = schema_errors(self.config_jsonschema, self.config)
        errors = ranges + (others or self.checked_settings[1])
        return [redact(error, self.config) for error in errors]

    @cached_property
    def checked_settings(self) -> tuple[Settings | None, list[str]]:
        return check_settings(self.config)

    @cached_property
    def settings(self) -> Settings:
        # Also where the SDK validates without raising (--discover): never a request with a
        # setting of the wrong type.
        settings, errors = self.checked_settings
        if settings is None or self.config_problems:
            errors = self.config_problems or errors
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

    @classmethod
    def invoke(cls, *args: t.Any, **kwargs: t.Any) -> None:
        # The SDK's CLI logs a bad config's errors and exits 1; main() ends with one sentence.
        try:
            super().invoke(*args, **kwargs)
        except ConfigValidationError as exc:
            for error in exc.errors:
                cls.logger.error(error)
            cls.logger.error("Config validation failed", extra={"schema": exc.schema})
            raise InvalidConfigurationError(exc.errors) from None

    def run_discovery(self) -> str:
        self.discovering = True
        return super().run_discovery()

    def discover_streams(self) -> t.Sequence[Stream]:
        streams: list[CustobarStream] = [stream_type(tap=self) for stream_type in STREAM_TYPES]
        if not self.discovering:
            if not page_writer.page_path_verified():
                self.logger.info(
                    "singer-sdk %s is not a version the page-at-a-time record path was "
                    "verified against (%s): records take the SDK's standard path (slower, "
                    "same output)",
                    page_writer.SDK_VERSION,
                    ", ".join(sorted(page_writer.VERIFIED_SDK_VERSIONS)),
                )
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
        schema, _ = search_fields(
            stream,
            page_size=int(self.config.get("page_size", MAX_PAGE_SIZE)),
            budget=int(self.config.get("discovery_max_records", DEFAULT_DISCOVERY_MAX_RECORDS)),
            logger=self.logger,
        )
        return type(stream)(tap=self, schema=schema)


class InvalidConfigurationError(Exception):
    """The configuration failed validation (its errors are logged already)."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("invalid configuration: " + " ".join(errors))


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
    except InvalidConfigurationError as exc:
        print(f"tap-custobar: error: {exc}", file=sys.stderr)
        sys.exit(1)
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
        sys.exit(code)


if __name__ == "__main__":
    main()
