from django.contrib import admin
from django.http import HttpResponsePermanentRedirect
from django.templatetags.static import static
from django.urls import include, path

urlpatterns = [
    # Browsers ask for /favicon.ico whatever the page says: sent to the SVG icon instead of a 404.
    path("favicon.ico", lambda request: HttpResponsePermanentRedirect(static("favicon.svg"))),
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("api/", include("annotate.api_urls")),
    path("api/", include("judges.api_urls")),
    path("api/", include("synth.api_urls")),
    path("", include("synth.urls")),
    path("", include("judges.urls")),
    path("", include("training.urls")),
    path("", include("annotate.urls")),
]

# Under /api/ errors are JSON with a message (annotate.api_errors); elsewhere Django's pages.
handler400 = "annotate.api_errors.bad_request"
handler403 = "annotate.api_errors.permission_denied"
handler404 = "annotate.api_errors.not_found"
handler500 = "annotate.api_errors.server_error"
