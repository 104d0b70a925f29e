from django.contrib import admin
from django.urls import path

from restores.api import BulkRestoreStatusView, BulkRestoreView

urlpatterns = [
    path("v3/bulk_restore", BulkRestoreView.as_view(), name="bulk-restore"),
    path("v3/bulk_restore_status", BulkRestoreStatusView.as_view(), name="bulk-restore-status"),
    path("admin/", admin.site.urls),
]

handler400 = "portal.api_errors.json_400"
handler404 = "portal.api_errors.json_404"
handler500 = "portal.api_errors.json_500"
