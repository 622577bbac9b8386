"""Operator commands on top of the gallery (``python -m app.gallery``): bulk enrolment
(``bulk``), export and import (``archive``), moving to a new model (``reembed``), and the
service's pipeline and model outside the service (``offline``). The command line is
``cli``."""
