"""Getting an API token: rate-limited per IP address and per account (``annotate.throttles``); repeated
failures also lock the address and the account out for a while (django-axes, which guards every login)."""

from rest_framework.authtoken.views import ObtainAuthToken

from annotate.throttles import LoginAccountThrottle, LoginIPThrottle


class ObtainToken(ObtainAuthToken):
    """POST your username and password: your API token, to send as ``Authorization: Token <key>``."""

    throttle_classes = [LoginIPThrottle, LoginAccountThrottle]


obtain_token = ObtainToken.as_view()
