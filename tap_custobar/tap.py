"""TapCustobar: settings, the shared HTTP session, the stream list and discovery."""

from __future__ import annotations

import logging
import sys
import typing as t
from functools import cached_property

import click
from singer_sdk import Tap
from singer_sdk.exceptions import ConfigValidationError, FatalAPIError

from tap_custobar import page_writer
from tap_custobar.discovery import search_fields
from tap_custobar.http import CustobarSession, RetriesExhaustedError
from tap_custobar.settings import (
    CONFIG_SCHEMA,
    DEFAULT_DISCOVERY_MAX_RECORDS,
    DEFAULT_USER_AGENT,
    MAX_PAGE_SIZE,
    Settings,
    check_settings,
    schema_errors,
    undocumented_event_types,
)
from tap_custobar.streams import CustomersStream, EventsStream, ProductsStream, SalesStream

if t.TYPE_CHECKING:
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
        super().__init__(*args, **kwargs)

    def _validate_config(self, *, raise_errors: bool = True) -> list[str]:
        # The SDK's only config check, and no public hook in 0.54: the JSON schema (which
        # fills in defaults), then what the schema cannot express (unless a setting has the
        # wrong type). Should the SDK rename it, `settings` still refuses a bad config
        # before the first request.
        ranges: list[str] = []
        others: list[str] = []
        if super()._validate_config(raise_errors=False):
            ranges, others = schema_errors(self.config_jsonschema, self.config)
        errors = ranges + (others or self.checked_settings[1])
        errors = [redact(error, self.config) for error in errors]
        if errors and raise_errors:
            raise ConfigValidationError(
                "Invalid tap-custobar configuration: " + " ".join(errors),
                errors=errors,
                schema=self.config_jsonschema,
            )
        return errors

    @cached_property
    def checked_settings(self) -> tuple[Settings | None, list[str]]:
        return check_settings(self.config)

    @cached_property
    def settings(self) -> Settings:
        settings, errors = self.checked_settings
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
            except RetriesExhaustedError as exc:  # unreachable: every stream would wait again
                self.logger.warning(
                    "Custom-field discovery failed (%s); the catalog has the built-in fields only",
                    " ".join(str(exc).split()),
                )
                return [stream_type(tap=self) for stream_type in STREAM_TYPES]
            except Exception as exc:  # discovery must still produce a catalog
                self.logger.warning(
                    "%s: custom-field discovery failed (%s); this stream keeps its built-in fields",
                    stream.name,
                    " ".join(str(exc).split()) or exc.__class__.__name__,
                )
                discovered.append(type(stream)(tap=self))
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
    return text.replace(token, "<redacted>") if len(token) >= 4 else text


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
    except (click.exceptions.Abort, KeyboardInterrupt):
        print("tap-custobar: interrupted.", file=sys.stderr)
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
