from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from annotate.roles import RESEARCHERS_GROUP, researcher_grant, researcher_revoke, researchers_group_ensure


class Command(BaseCommand):
    help = (f"Researchers may create projects, endpoints and judges and start judge runs, synthesis and "
            f"training: the {RESEARCHERS_GROUP!r} group, made here with its permissions. "
            f"Usage: researchers add NAME [NAME ...] | remove NAME [...] | list")

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["add", "remove", "list"])
        parser.add_argument("usernames", nargs="*")

    def handle(self, *args, action, usernames, **options):
        group = researchers_group_ensure()
        User = get_user_model()
        if action == "list":
            for user in group.user_set.order_by("username"):
                self.stdout.write(user.username)
            return
        if not usernames:
            raise CommandError(f"name the users to {action}")
        users = {u.username: u for u in User.objects.filter(username__in=usernames)}
        missing = [name for name in usernames if name not in users]
        if missing:
            raise CommandError(f"no such user: {', '.join(missing)}")
        for name in usernames:
            (researcher_grant if action == "add" else researcher_revoke)(user=users[name])
        what = "are now researchers" if action == "add" else "are no longer researchers"
        self.stdout.write(self.style.SUCCESS(f"{', '.join(usernames)} {what}"))
