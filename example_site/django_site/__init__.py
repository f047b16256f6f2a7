"""A minimal Django project showing the one-line integration.

    cd example_site/django_site && python manage.py runserver
"""
