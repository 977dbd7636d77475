"""Names shared by the export and the import: formats, columns, Label Studio's tags and users."""
from __future__ import annotations

import re

#: what export_project writes
EXPORT_FORMATS = ("csv", "label-studio", "json-min", "imagefolder")
#: what import_file reads
IMPORT_FORMATS = ("label-studio", "json-min", "csv")
#: the items an export covers
ONLY = ("all", "pending")
#: the columns of the csv export, in order
CSV_COLUMNS = ("id", "key", "label", "status", "votes", "annotators", "rank", "score", "guess", "confidence")
#: the prefix of Label Studio's users as annotators
LABEL_STUDIO = "label-studio:"
#: the annotator of imported labels whose file names none, unless import_file is told one
DEFAULT_IMPORTER = "import"
#: the names of the control and object tags in the exported labeling configuration
CONTROL, IMAGE_TAG, ROW_TAG = "label", "image", "row"
#: reasons an imported answer is not written
CANCELLED, EMPTY, ECHO, SUPERSEDED = "cancelled", "no label", "exported by activeloss", "superseded in the file"

# fields of Label Studio's and our exports that never hold the label
NOT_LABELS = frozenset({
    "id", "annotator", "annotation_id", "created_at", "updated_at", "lead_time", "agreement", "history",
    "activeloss_id", "activeloss_key", "activeloss_labels", "activeloss_annotator", IMAGE_TAG, ROW_TAG, "rank",
    "score", "status", "key", "item", "votes", "annotators", "guess", "confidence", "drafts", "predictions",
    "meta", "project", "inner_id", "total_annotations", "cancelled_annotations", "total_predictions",
    "file_upload", "updated_by", "comment_count", "unresolved_comment_count", "last_comment_updated_at",
})
UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-")
