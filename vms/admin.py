from django.contrib import admin

from vms.models import Host, LabVM


@admin.register(Host)
class HostAdmin(admin.ModelAdmin):
    list_display = ["name", "uri", "enabled", "max_vms"]
    list_editable = ["enabled", "max_vms"]


@admin.register(LabVM)
class LabVMAdmin(admin.ModelAdmin):
    list_display = ["id", "owner", "exercise", "host", "state", "state_changed_at", "boot_seconds"]
    list_filter = ["state", "kind", "host"]
    search_fields = ["id", "owner__username", "exercise__slug"]
    readonly_fields = [f.name for f in LabVM._meta.fields]

    def has_add_permission(self, request: object) -> bool:
        return False  # VMs are made by lab_start, never by hand
