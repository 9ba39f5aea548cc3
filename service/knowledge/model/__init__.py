"""Typed, frozen models of every mappings/ file, one module per domain. Unknown keys are rejected;
cross-field rules (contiguous bands, known risk levels) are checked here so a bad file fails at load time."""

from service.knowledge.model.base import *  # noqa: F403
from service.knowledge.model.cohort import *  # noqa: F403
from service.knowledge.model.files import *  # noqa: F403
from service.knowledge.model.linezolid import *  # noqa: F403
from service.knowledge.model.magnesium import *  # noqa: F403
from service.knowledge.model.medications import *  # noqa: F403
from service.knowledge.model.output import *  # noqa: F403
from service.knowledge.model.pgx import *  # noqa: F403
from service.knowledge.model.renal import *  # noqa: F403
