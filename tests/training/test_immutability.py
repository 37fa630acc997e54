"""A snapshot never changes once it is made: its content fields refuse a change, its file is read-only,
the admin shows it read-only, and a file altered on disk is refused at download."""

import os
import stat

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from tests.factories import MembershipFactory, PairLabelFactory
from training.models import SNAPSHOT_CONTENT_FIELDS, DatasetSnapshot, SnapshotImmutable
from training.services import snapshot_create, snapshot_path

pytestmark = pytest.mark.django_db


@pytest.fixture
def researcher():
    return MembershipFactory(researcher=True)


@pytest.fixture
def snapshot(researcher, media):
    for verdict in ("A", "B", "A"):
        PairLabelFactory(item__project=researcher.project, verdict=verdict, strength=2)
    return snapshot_create(project=researcher.project, name="v1", user=researcher.user)


@pytest.mark.parametrize(("field", "value"), [
    ("rows", 99), ("sha256", "0" * 64), ("file", "snapshots/elsewhere.jsonl"), ("manifest", {"lineage": []}),
    ("options", {"weighted": True}), ("source", "ai"), ("format", "stepwise"), ("dropped", {"tie": 1}),
])
def test_a_stored_snapshot_refuses_a_change_of_content(snapshot, field, value):
    before = DatasetSnapshot.objects.values(field).get(pk=snapshot.pk)[field]
    setattr(snapshot, field, value)
    with pytest.raises(SnapshotImmutable, match=f"immutable: {field} cannot change"):
        snapshot.save()
    with pytest.raises(SnapshotImmutable):
        snapshot.save(update_fields=[field])
    assert DatasetSnapshot.objects.values(field).get(pk=snapshot.pk)[field] == before


def test_another_project_is_refused_and_a_new_name_is_kept(snapshot):
    other = MembershipFactory(researcher=True).project
    fresh = DatasetSnapshot.objects.get(pk=snapshot.pk)
    fresh.project = other
    with pytest.raises(SnapshotImmutable, match="project"):
        fresh.save()
    fresh = DatasetSnapshot.objects.get(pk=snapshot.pk)
    fresh.name = "renamed"
    fresh.save()
    assert DatasetSnapshot.objects.get(pk=snapshot.pk).name == "renamed"


def test_the_file_is_read_only(snapshot):
    mode = stat.S_IMODE(os.stat(snapshot_path(snapshot=snapshot)).st_mode)
    assert mode == 0o444


def test_the_admin_shows_every_content_field_read_only(client, snapshot):
    admin = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(admin)
    page = client.get(reverse("admin:training_datasetsnapshot_change", args=[snapshot.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    for field in SNAPSHOT_CONTENT_FIELDS:
        assert f'name="{field}"' not in html
    assert snapshot.sha256 in html
    response = client.post(reverse("admin:training_datasetsnapshot_change", args=[snapshot.pk]),
                           {"rows": 1, "sha256": "0" * 64, "name": "x"})
    assert response.status_code == 403
    snapshot.refresh_from_db()
    assert (snapshot.rows, snapshot.name) == (3, "v1")


def test_a_tampered_file_is_refused_at_download(client, researcher, snapshot):
    client.force_login(researcher.user)
    url = reverse("training:snapshot_download", args=[researcher.project.pk, snapshot.pk])
    response = client.get(url)
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == snapshot_path(snapshot=snapshot).read_bytes()

    path = snapshot_path(snapshot=snapshot)
    os.chmod(path, 0o644)
    altered = bytearray(path.read_bytes())
    altered[-10] ^= 0x01  # one bit of one reply
    path.write_bytes(bytes(altered))
    response = client.get(url)
    assert response.status_code == 409
    assert "altered" in response.content.decode() and snapshot.sha256[:12] in response.content.decode()

    path.unlink()
    response = client.get(url)
    assert response.status_code == 409 and "missing" in response.content.decode()
