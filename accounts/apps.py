from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts and audit"

    def ready(self) -> None:
        from django.contrib.auth.models import Group

        from aspweb import config as config_file

        from . import config, sessions, signin, teams
        from .backends import users
        from .models import Team, User

        users.follow(User, User.groups.through, Group)
        teams.logging_teams.follow(Team)
        sessions.follow()
        signin.follow()
        config_file.section_register(config.SECTION)
