"""Labeling your own data: a project folder, annotators' answers, and a model each round."""
from .answers import Answer, Derived, derive
from .project import DEFAULT_STRATEGY, BatchItem, FitResult, Project, QueryResult

__all__ = ["DEFAULT_STRATEGY", "Answer", "BatchItem", "Derived", "FitResult", "Project", "QueryResult", "derive"]
