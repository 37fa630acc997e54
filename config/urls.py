from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("api/", include("annotate.api_urls")),
    path("api/", include("judges.api_urls")),
    path("", include("synth.urls")),
    path("", include("judges.urls")),
    path("", include("training.urls")),
    path("", include("annotate.urls")),
]
