"""mixopt: a Python client for the mixopt coordinator — studies, trials and curves as
dataclasses (to_pandas()), plots, and external trials run by your own launcher."""

from .client import Client
from .errors import (FailedPreconditionError, InvalidArgumentError, LeaseLostError, MixoptError, NotFoundError,
                     PermissionDeniedError, TrialStopped, UnauthenticatedError, UnavailableError)
from .models import CurveList, CurvePoint, Recommendation, Study, StudyList, Trial, TrialList, Worker
from .spec import load_spec
from .work import ERROR_CLASSES, FAILURE_CLASSES, ExternalTrial, ExternalWorker

__version__ = "0.1.0"

__all__ = [
    "Client", "load_spec", "Study", "Trial", "CurvePoint", "Recommendation", "Worker", "StudyList", "TrialList",
    "CurveList", "ExternalTrial", "ExternalWorker", "ERROR_CLASSES", "FAILURE_CLASSES", "MixoptError", "InvalidArgumentError",
    "NotFoundError", "FailedPreconditionError", "UnavailableError", "UnauthenticatedError", "PermissionDeniedError",
    "LeaseLostError", "TrialStopped",
]
