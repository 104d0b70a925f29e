from django.contrib import admin
from django.urls import path, re_path

from portal.api_errors import json_404
from portal.docs import PublicSchemaView, PublicSwaggerView
from portal.health import healthz, readyz
from portal.metrics import metrics
from restores.api import BulkRestoreJobsView, BulkRestoreStatusView, BulkRestoreView

urlpatterns = [
    path("v3/bulk_restore", BulkRestoreView.as_view(), name="bulk-restore"),
    path("v3/bulk_restore_status", BulkRestoreStatusView.as_view(), name="bulk-restore-status"),
    path("v3/bulk_restore_jobs", BulkRestoreJobsView.as_view(), name="bulk-restore-jobs"),
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics, name="metrics"),
    path("api/schema/", PublicSchemaView.as_view(), name="api-schema"),
    path("api/docs/", PublicSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("admin/", admin.site.urls),
    # Unknown API paths answer in the API's error shape, whatever DEBUG says.
    re_path(r"^v3/", json_404),
]

handler400 = "portal.api_errors.json_400"
handler404 = "portal.api_errors.json_404"
handler500 = "portal.api_errors.json_500"
