"""The one command that starts the service, everywhere: locally, in CI's tests
(tests/service/conftest.py) and in the container (Dockerfile CMD; tests/deploy checks it).
Run from the repository root, with the virtualenv's gunicorn as argv[0]."""
GUNICORN_ARGV = ["gunicorn", "-c", "gunicorn.conf.py"]
