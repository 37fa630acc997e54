"""factory_boy factories for the core rows."""

from __future__ import annotations

import factory
from django.contrib.auth import get_user_model

from annotate.models import Completion, ItemSlot, Membership, PairItem, PairLabel, Project, Prompt


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ["username"]

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.django.Password("pw-for-tests")


class ProjectFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Project

    name = factory.Sequence(lambda n: f"Project {n}")
    guidelines = "Pick the better answer."


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    project = factory.SubFactory(ProjectFactory)
    user = factory.SubFactory(UserFactory)
    role = Membership.Role.ANNOTATOR

    class Params:
        researcher = factory.Trait(role=Membership.Role.RESEARCHER)


class PromptFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Prompt

    project = factory.SubFactory(ProjectFactory)
    messages = factory.Sequence(lambda n: [{"role": "user", "content": f"Question number {n}?"}])


class CompletionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Completion

    prompt = factory.SubFactory(PromptFactory)
    text = factory.Sequence(lambda n: f"Answer {n}.")


class PairItemFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = PairItem

    project = factory.SubFactory(ProjectFactory)
    prompt = factory.SubFactory(PromptFactory, project=factory.SelfAttribute("..project"))
    completion_a = factory.SubFactory(CompletionFactory, prompt=factory.SelfAttribute("..prompt"))
    completion_b = factory.SubFactory(CompletionFactory, prompt=factory.SelfAttribute("..prompt"))

    class Params:
        gold = factory.Trait(is_gold=True, gold_verdict="A")

    @factory.post_generation
    def slots(obj, create, extracted, **kwargs):  # noqa: N805
        """Like the services: a non-gold item gets the project's k slots."""
        if create and not obj.is_gold:
            ItemSlot.objects.bulk_create([ItemSlot(project=obj.project, item=obj, number=n)
                                          for n in range(obj.project.overlap)])


class PairLabelFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = PairLabel

    item = factory.SubFactory(PairItemFactory)
    annotator = factory.SubFactory(UserFactory)
    verdict = "A"
    strength = 3
