from django.conf import settings
from django.db import migrations


def add_local_host(apps, schema_editor):
    Host = apps.get_model("vms", "Host")
    Host.objects.get_or_create(
        name=settings.KERNELLAB_HOST_NAME, defaults={"uri": settings.LIBVIRT_URI, "max_vms": 8}
    )


class Migration(migrations.Migration):
    dependencies = [("vms", "0001_initial")]
    operations = [migrations.RunPython(add_local_host, migrations.RunPython.noop)]
