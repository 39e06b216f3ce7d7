"""``flask --app wsgi db …``: schema migrations with Alembic."""

from __future__ import annotations

from pathlib import Path

import click
from alembic import command
from alembic.config import Config
from flask import current_app
from flask.cli import with_appcontext

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    _ensure_sqlite_folder(database_url)
    command.upgrade(alembic_config(database_url), revision)


def _ensure_sqlite_folder(database_url: str) -> None:
    prefix = "sqlite:///"
    if database_url.startswith(prefix) and database_url != "sqlite:///:memory:":
        Path(database_url[len(prefix) :]).parent.mkdir(parents=True, exist_ok=True)


@click.group("db", help="データベースのスキーマ管理（Alembic）")
def db_cli() -> None:
    pass


@db_cli.command("upgrade", help="未適用のマイグレーションを適用する")
@click.argument("revision", default="head")
@with_appcontext
def db_upgrade(revision: str) -> None:
    upgrade(current_app.config["DATABASE_URL"], revision)
    click.echo("データベースを最新の状態にしました。")


@db_cli.command("revision", help="モデルとの差分から新しいマイグレーションを作る（開発者向け）")
@click.option("-m", "--message", required=True)
@with_appcontext
def db_revision(message: str) -> None:
    command.revision(
        alembic_config(current_app.config["DATABASE_URL"]), message=message, autogenerate=True
    )


@db_cli.command("current", help="適用済みのリビジョンを表示する")
@with_appcontext
def db_current() -> None:
    command.current(alembic_config(current_app.config["DATABASE_URL"]))
