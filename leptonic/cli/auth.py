"""``leptonic login/logout/whoami``, ``user``, ``token``, ``secret`` and ``audit``.

Passwords and secret values never come from argv (they would land in shell history and
``ps``): they are read from a hidden prompt, stdin, or a file.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from leptonic.cli._context import OutputOpt, TokenOpt, UrlOpt, connect, options
from leptonic.cli._output import age, clock, fail, fields, show, table
from leptonic.client._base import save_token

users = typer.Typer(help="Users and their roles (admin only).", no_args_is_help=True)
tokens = typer.Typer(help="API tokens: named, role-bound, revocable (admin only).",
                     no_args_is_help=True)
secrets = typer.Typer(help="Secrets, injected into replicas as environment variables.",
                      no_args_is_help=True)

RoleOpt = Annotated[str, typer.Option("--role", "-r",
                                      help="viewer (reads), developer (deploys), admin.")]
PasswordStdin = Annotated[bool, typer.Option(
    "--password-stdin", help="Read the password from stdin instead of a prompt.")]


def read_password(from_stdin: bool, *, confirm: bool = False) -> str:
    if from_stdin or not sys.stdin.isatty():
        value = sys.stdin.readline().rstrip("\n")
    else:
        value = typer.prompt("Password", hide_input=True, confirmation_prompt=confirm)
    if not value:
        fail("no password given")
    return value


# -- sessions -----------------------------------------------------------------------------
def login(ctx: typer.Context,
          username: Annotated[str, typer.Option("--username", "-u", prompt=True)],
          password_stdin: PasswordStdin = False,
          output: OutputOpt = None, url: UrlOpt = None) -> None:
    """Log in with a username and password; the session token is saved for this URL."""
    opts = options(ctx, output, url, None)
    password = read_password(password_stdin)
    with connect(opts) as client:
        session = client.login(username, password)
        path = save_token(client.url, session["token"])
    info = {"username": session["username"], "role": session["role"],
            "expires_at": session["expires_at"], "saved_to": str(path)}
    show(opts, info, lambda i: fields([("logged in as", f"{i['username']} ({i['role']})"),
                                       ("expires", clock(i["expires_at"])),
                                       ("token saved to", i["saved_to"])]))


def logout(ctx: typer.Context, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """End the session and forget its saved token."""
    opts = options(ctx, None, url, token)
    with connect(opts) as client:
        client.logout()
        save_token(client.url, None)
    typer.echo("logged out")


def whoami(ctx: typer.Context, output: OutputOpt = None, url: UrlOpt = None,
           token: TokenOpt = None) -> None:
    """Who the current token belongs to and its role."""
    opts = options(ctx, output, url, token)
    with connect(opts) as client:
        me = client.whoami()
    show(opts, me, lambda m: fields(m.items()))


# -- users --------------------------------------------------------------------------------
def _users_table(rows: list[dict[str, Any]]) -> object:
    return table(["USERNAME", "ROLE", "DISABLED", "CREATED", "LAST LOGIN"],
                 [(u["username"], u["role"], "yes" if u["disabled"] else "",
                   age(u["created_at"]), clock(u["last_login_at"]) if u["last_login_at"]
                   else "-") for u in rows])


@users.command("create")
def user_create(ctx: typer.Context, username: str, role: RoleOpt = "viewer",
                password_stdin: PasswordStdin = False, output: OutputOpt = None,
                url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Create a user (the password is prompted for, or read from stdin)."""
    opts = options(ctx, output, url, token)
    password = read_password(password_stdin, confirm=True)
    with connect(opts) as client:
        user = client.create_user(username, password, role)
    show(opts, user, lambda u: _users_table([u]))


@users.command("list")
def user_list(ctx: typer.Context, output: OutputOpt = None, url: UrlOpt = None,
              token: TokenOpt = None) -> None:
    opts = options(ctx, output, url, token)
    with connect(opts) as client:
        found = client.list_users()
    show(opts, found, _users_table)


@users.command("set")
def user_set(ctx: typer.Context, username: str,
             role: Annotated[str | None, typer.Option("--role", "-r")] = None,
             disabled: Annotated[bool | None, typer.Option("--disabled/--enabled")] = None,
             output: OutputOpt = None, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Change a user's role, or disable/enable the account (ends its sessions)."""
    if role is None and disabled is None:
        raise typer.BadParameter("give --role or --disabled/--enabled")
    opts = options(ctx, output, url, token)
    with connect(opts) as client:
        user = client.update_user(username, role=role, disabled=disabled)
    show(opts, user, lambda u: _users_table([u]))


@users.command("delete")
def user_delete(ctx: typer.Context, username: str, url: UrlOpt = None,
                token: TokenOpt = None) -> None:
    opts = options(ctx, None, url, token)
    with connect(opts) as client:
        client.delete_user(username)
    typer.echo(f"user {username} deleted")


@users.command("invite")
def user_invite(ctx: typer.Context, role: RoleOpt = "viewer",
                expires_in: Annotated[float, typer.Option(help="Seconds it stays valid.")]
                = 7 * 86400,
                output: OutputOpt = None, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """An invitation token for one person to register (`leptonic register`)."""
    opts = options(ctx, output, url, token)
    with connect(opts) as client:
        inv = client.create_invitation(role, expires_in)
    show(opts, inv, lambda i: fields([("invitation", i["invitation"]), ("role", i["role"]),
                                      ("expires", clock(i["expires_at"]))]))


def register(ctx: typer.Context,
             username: Annotated[str, typer.Option("--username", "-u", prompt=True)],
             invitation: Annotated[str, typer.Option(
                 "--invitation", prompt=True, hide_input=True,
                 help="The invitation token an admin gave you.")],
             password_stdin: PasswordStdin = False,
             output: OutputOpt = None, url: UrlOpt = None) -> None:
    """Create your account with an invitation, then `leptonic login`."""
    opts = options(ctx, output, url, None)
    password = read_password(password_stdin, confirm=True)
    with connect(opts) as client:
        user = client.register(invitation, username, password)
    show(opts, user, lambda u: _users_table([u]))


# -- API tokens ---------------------------------------------------------------------------
def _tokens_table(rows: list[dict[str, Any]]) -> object:
    return table(["ID", "NAME", "ROLE", "DEPLOYMENT", "RATE", "EXPIRES", "LAST USED",
                  "REVOKED"],
                 [(t["id"], t["name"], t["role"], t.get("deployment") or "-",
                   f"{t['rate_limit_rps']:g}/s" if t.get("rate_limit_rps") else "-",
                   clock(t["expires_at"]) if t.get("expires_at") else "never",
                   clock(t["last_used_at"]) if t.get("last_used_at") else "-",
                   "yes" if t["revoked"] else "") for t in rows])


@tokens.command("create")
def token_create(ctx: typer.Context, name: str, role: RoleOpt = "viewer",
                 expires_in: Annotated[float | None, typer.Option(
                     help="Seconds until it expires (default: never).")] = None,
                 deployment: Annotated[str | None, typer.Option(
                     help="Only for /run/DEPLOYMENT through the gateway.")] = None,
                 rate_limit: Annotated[float | None, typer.Option(
                     help="Gateway requests per second (default: no limit).")] = None,
                 output: OutputOpt = None, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Create an API token; it is shown once, here."""
    opts = options(ctx, output, url, token)
    with connect(opts) as client:
        new = client.create_token(name, role, expires_in_s=expires_in, deployment=deployment,
                                  rate_limit_rps=rate_limit)
    show(opts, new, lambda t: fields([("token", t["token"]), ("id", t["id"]),
                                      ("role", t["role"]),
                                      ("note", "shown once: store it now")]))


@tokens.command("list")
def token_list(ctx: typer.Context, output: OutputOpt = None, url: UrlOpt = None,
               token: TokenOpt = None) -> None:
    opts = options(ctx, output, url, token)
    with connect(opts) as client:
        found = client.list_tokens()
    show(opts, found, _tokens_table)


@tokens.command("revoke")
def token_revoke(ctx: typer.Context, token_id: int, url: UrlOpt = None,
                 token: TokenOpt = None) -> None:
    opts = options(ctx, None, url, token)
    with connect(opts) as client:
        client.revoke_token(token_id)
    typer.echo(f"token {token_id} revoked")


# -- secrets ------------------------------------------------------------------------------
def _secret_value(from_file: Path | None) -> str:
    if from_file is not None:
        return from_file.read_text().rstrip("\n")
    if sys.stdin.isatty():
        return str(typer.prompt("Value", hide_input=True))
    return sys.stdin.read().rstrip("\n")


FromFile = Annotated[Path | None, typer.Option(
    "--from-file", "-f", help="Read the value from this file (default: stdin or a prompt).",
    exists=True, dir_okay=False, readable=True)]


def _secrets_table(rows: list[dict[str, Any]]) -> object:
    return table(["NAME", "CREATED", "UPDATED", "BY"],
                 [(s["name"], age(s["created_at"]), age(s["updated_at"]),
                   s.get("created_by") or "-") for s in rows])


@secrets.command("create")
def secret_create(ctx: typer.Context, name: str, from_file: FromFile = None,
                  output: OutputOpt = None, url: UrlOpt = None,
                  token: TokenOpt = None) -> None:
    """Store a secret (value from stdin, a file or a hidden prompt; never from argv)."""
    opts = options(ctx, output, url, token)
    value = _secret_value(from_file)
    with connect(opts) as client:
        meta = client.create_secret(name, value)
    show(opts, meta, lambda s: _secrets_table([s]))


@secrets.command("update")
def secret_update(ctx: typer.Context, name: str, from_file: FromFile = None,
                  output: OutputOpt = None, url: UrlOpt = None,
                  token: TokenOpt = None) -> None:
    """Replace a secret's value (replicas get it when they next start)."""
    opts = options(ctx, output, url, token)
    value = _secret_value(from_file)
    with connect(opts) as client:
        meta = client.update_secret(name, value)
    show(opts, meta, lambda s: _secrets_table([s]))


@secrets.command("list")
def secret_list(ctx: typer.Context, output: OutputOpt = None, url: UrlOpt = None,
                token: TokenOpt = None) -> None:
    """Secret names and dates (values are never shown)."""
    opts = options(ctx, output, url, token)
    with connect(opts) as client:
        found = client.list_secrets()
    show(opts, found, _secrets_table)


@secrets.command("delete")
def secret_delete(ctx: typer.Context, name: str, url: UrlOpt = None,
                  token: TokenOpt = None) -> None:
    opts = options(ctx, None, url, token)
    with connect(opts) as client:
        client.delete_secret(name)
    typer.echo(f"secret {name} deleted")


# -- audit --------------------------------------------------------------------------------
def audit(ctx: typer.Context,
          limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
          actor: Annotated[str | None, typer.Option(help="Only this actor (user:NAME, "
                                                         "token:NAME).")] = None,
          output: OutputOpt = None, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Every state change: who, what, when, from where, and the answer (admin only)."""
    opts = options(ctx, output, url, token)
    with connect(opts) as client:
        entries = client.audit(limit, actor)
    show(opts, entries, lambda rows: table(
        ["TIME", "ACTOR", "ACTION", "OBJECT", "STATUS", "FROM"],
        [(clock(e["time"]), e["actor"], e["action"], e["object"], e["status"], e["source"])
         for e in rows]))
