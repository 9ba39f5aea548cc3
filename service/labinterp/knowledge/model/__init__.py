"""Typed, frozen models of every mappings/ file, one module per domain. Unknown keys are rejected;
cross-field rules (contiguous bands, known risk levels) are checked here so a bad file fails at load time."""

from labinterp.knowledge.model.base import *  # noqa: F403
from labinterp.knowledge.model.cohort import *  # noqa: F403
from labinterp.knowledge.model.files import *  # noqa: F403
from labinterp.knowledge.model.linezolid import *  # noqa: F403
from labinterp.knowledge.model.magnesium import *  # noqa: F403
from labinterp.knowledge.model.medications import *  # noqa: F403
from labinterp.knowledge.model.output import *  # noqa: F403
from labinterp.knowledge.model.pgx import *  # noqa: F403
from labinterp.knowledge.model.qc import *  # noqa: F403
from labinterp.knowledge.model.renal import *  # noqa: F403
