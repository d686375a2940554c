"""``python -m jaxmodels`` runs the command line."""

from jaxmodels.main import run

run()
