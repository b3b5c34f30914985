"""The one top-level error handler of the click command lines (restnet, restnet-pack).

Every failure leaves as one message on stderr and the exit code of its class (toolkit.errors): a
user error names what, where and how to fix it; anything else is reported as an internal error. No
traceback unless ``--debug`` (or RESTNET_DEBUG=1). A command that knows what survives a failure (the
previous package, the cache) sets ``ctx.meta[KEPT]`` and the handler adds it as a ``Kept:`` line.
"""
from __future__ import annotations

import click

from toolkit.errors import classify, debug_on

DEBUG = "restnet.debug"
KEPT = "restnet.kept"


def _set_debug(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        ctx.meta[DEBUG] = True


debug_option = click.option("--debug", is_flag=True, expose_value=False, is_eager=True, callback=_set_debug,
                            help="On failure, show the full traceback (also: RESTNET_DEBUG=1).")


class Failure(click.ClickException):
    """A classified failure on its way out through click (which prints it and exits with its code)."""

    def __init__(self, code: int, message: str, kept: str | None = None):
        super().__init__(message)
        self.exit_code, self.kept = code, kept

    def show(self, file=None) -> None:
        click.echo(f"Error: {self.format_message()}", err=True)
        if self.kept:
            click.echo(f"Kept: {self.kept}", err=True)


_PASS = (click.ClickException, click.exceptions.Exit, click.Abort, SystemExit, GeneratorExit)


class _Handled:
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except _PASS:
            raise
        except BaseException as err:  # noqa: BLE001 - every failure becomes one message and its code
            if (ctx.meta.get(DEBUG) or debug_on()) and not isinstance(err, KeyboardInterrupt):
                raise
            code, msg = classify(err)
            raise Failure(code, msg, ctx.meta.get(KEPT)) from None


class HandledGroup(_Handled, click.Group):
    """A click group whose every subcommand's failure goes through the handler."""


class HandledCommand(_Handled, click.Command):
    """A standalone click command (restnet-pack) with the same handler."""
