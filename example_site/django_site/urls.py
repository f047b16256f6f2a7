from django.shortcuts import render
from django.urls import path


def home(request):
    return render(request, "django_home.html")


def pricing(request):
    return render(request, "django_home.html", {"pricing": True})


urlpatterns = [path("", home), path("pricing", pricing)]
