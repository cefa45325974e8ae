"""KernelLab settings: one file, every knob read from the environment.

KERNELLAB_ENV=development (default) is for a laptop or the demo: DEBUG on,
an insecure throw-away secret key, plain HTTP. KERNELLAB_ENV=production turns
DEBUG off, demands a real SECRET_KEY and enables every HTTPS hardening flag, so
that `manage.py check --deploy --fail-level WARNING` passes.
"""

from __future__ import annotations

import os
import warnings
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from labplatform.env import env_bool, env_choice, env_int, env_list, env_path, env_str

BASE_DIR = Path(__file__).resolve().parent.parent

ENVIRONMENT = env_choice("KERNELLAB_ENV", "development", ("development", "production"))
PRODUCTION = ENVIRONMENT == "production"
DEBUG = env_bool("DEBUG", not PRODUCTION)

# Where the platform keeps its own state (SQLite file, celery beat schedule,
# console logs). Outside the code so that a checkout can be replaced.
DATA_DIR = env_path("KERNELLAB_DATA_DIR", BASE_DIR / "var")
DATA_DIR.mkdir(parents=True, exist_ok=True)

_DEV_SECRET = "django-insecure-kernellab-development-only-never-in-production"  # noqa: S105
SECRET_KEY = env_str("SECRET_KEY", "" if PRODUCTION else _DEV_SECRET)
if PRODUCTION and (not SECRET_KEY or SECRET_KEY == _DEV_SECRET):
    raise ImproperlyConfigured(
        "SECRET_KEY is not set. In production (KERNELLAB_ENV=production) set SECRET_KEY to a "
        "long random string, for example the output of: "
        'python3 -c "import secrets; print(secrets.token_urlsafe(50))"'
    )

ALLOWED_HOSTS = env_list(
    "ALLOWED_HOSTS", [] if PRODUCTION else ["localhost", "127.0.0.1", "[::1]", "testserver"]
)
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
SITE_URL = env_str("SITE_URL", "http://localhost:8000")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "ninja",
    "labplatform.accounts",
    "labplatform.courses",
    "exercises",
    "vms",
    "labplatform.api",
    "axes",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "labplatform.api.idempotency.IdempotencyMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: turns a locked-out login into its 429.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "labplatform.urls"
ASGI_APPLICATION = "labplatform.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "frontend" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
            # Tag libraries of packages that are not apps of their own.
            "libraries": {
                "cohort_tabs": "labplatform.courses.board.templatetags.cohort_tabs",
                "grading": "labplatform.courses.grades.templatetags",
            },
        },
    },
]

# SQLite is the embedded default; DATABASE_URL selects anything else (Postgres).
# The SQLite options let the web process and the worker write side by side:
# WAL readers never block, and IMMEDIATE transactions queue instead of failing.
_SQLITE_PATH = DATA_DIR / "kernellab.sqlite3"
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{_SQLITE_PATH}"), conn_max_age=0
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # A file, not memory, so that servers and workers started by the tests
    # (uvicorn, celery) see the rows the tests write.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test.sqlite3")}
else:
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# django-axes first: it refuses a locked-out login before the password is checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env_path("STATIC_ROOT", DATA_DIR / "static")
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
_NODE_MODULES = BASE_DIR / "frontend" / "node_modules"
STATICFILES_DIRS = [
    BASE_DIR / "frontend" / "static",
    # xterm.js comes from npm (frontend/package-lock.json), never a CDN.
    ("vendor/xterm", _NODE_MODULES / "@xterm" / "xterm" / "lib"),
    ("vendor/xterm-css", _NODE_MODULES / "@xterm" / "xterm" / "css"),
    ("vendor/xterm-addon-fit", _NODE_MODULES / "@xterm" / "addon-fit" / "lib"),
    # The recordings' player, also from npm.
    ("vendor/asciinema-player", _NODE_MODULES / "asciinema-player" / "dist" / "bundle"),
]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if not DEBUG
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}

# WhiteNoise hands Django a synchronous file iterator; under ASGI Django reads it
# in a thread and warns once per file. Static files are small and, in
# production, cached by browsers for a year (hashed names), so that is fine.
warnings.filterwarnings(
    "ignore", message="StreamingHttpResponse must consume synchronous iterators", category=Warning
)

# --- E-mail: password resets and roster invitations ---------------------------------
# Mail is printed to the console until an SMTP server is named (EMAIL_HOST);
# EMAIL_BACKEND, when set, wins over both.
EMAIL_HOST = env_str("EMAIL_HOST", "")
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
# STARTTLS on 587 unless implicit TLS (SSL, 465) is asked for.
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", not EMAIL_USE_SSL)
if EMAIL_USE_SSL and EMAIL_USE_TLS:
    raise ImproperlyConfigured("EMAIL_USE_TLS and EMAIL_USE_SSL are both on: set only one")
EMAIL_PORT = env_int("EMAIL_PORT", 465 if EMAIL_USE_SSL else 587, minimum=1)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 30, minimum=1)
EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend"
    if EMAIL_HOST
    else "django.core.mail.backends.console.EmailBackend",
)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "KernelLab <noreply@localhost>")

# --- Redis: Celery broker and the Channels layer --------------------------------
REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "labplatform.channel_layer.RedisChannelLayer",  # outlives Redis restarts
        "CONFIG": {
            # redis-py 8 reads with a 5 s socket timeout by default, the same
            # as channels_redis's 5 s BZPOPMIN: a reply a moment late (a busy
            # loop) raised TimeoutError and killed the consumer. Give reads room.
            # Its asyncio pool also refuses a 101st concurrent connection
            # (MaxConnectionsError) instead of waiting: hundreds of consoles
            # closing at once (a web process restarting) hit that.
            "hosts": [{"address": REDIS_URL, "socket_timeout": 30, "max_connections": 1000}],
            "capacity": 500,
            "expiry": 30,
        },
    }
}

# The Django cache holds the rate limits' counters (labplatform.ratelimits and
# the API's): in Redis, so that every web process counts the same requests.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": env_str("CACHE_URL", REDIS_URL),
        "KEY_PREFIX": env_str("CACHE_KEY_PREFIX", "kernellab"),
    }
}

# --- Celery ---------------------------------------------------------------------
# The longest task (an authoritative Submit: boot a clean guest, build, run the
# hidden tests) is bounded by CELERY_TASK_TIME_LIMIT; Redis must not hand an
# unacknowledged task to a second worker before that limit is reached.
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 30 * 60, minimum=60)
CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = REDIS_URL
CELERY_RESULT_EXPIRES = 3600
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_TASK_TIME_LIMIT * 2}
CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_TASK_TIME_LIMIT * 2}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")
# Tasks run at once per hypervisor host and kind of work (vms.queues): lab
# lifecycle, grading and housekeeping each have a worker process of their own
# (manage.py run_worker <kind>), so a wave of Submits never delays a Start and
# pool refills never delay the reaper.
WORKER_SLOTS = {
    "lab": env_int("WORKER_LAB_SLOTS", 2, minimum=1),
    "grading": env_int("WORKER_GRADING_SLOTS", 2, minimum=1),
    "housekeeping": env_int("WORKER_HOUSEKEEPING_SLOTS", 2, minimum=1),
}
CELERY_BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    "reap-vms": {"task": "vms.reap_all", "schedule": 60.0},
    "console-housekeeping": {"task": "vms.console_housekeeping", "schedule": 3600.0},
    "reap-attempts": {"task": "exercises.reap_attempts", "schedule": 5 * 60.0},
    "purge-idempotency-records": {"task": "api.idempotency_purge", "schedule": 3600.0},
    "clear-expired-sessions": {
        "task": "labplatform.tasks.clear_expired_sessions",
        "schedule": 6 * 3600.0,
    },
}

# --- Virtualisation ---------------------------------------------------------------
LIBVIRT_URI = env_str("LIBVIRT_URI", "qemu:///system")
# kvm: hardware virtualisation; qemu: TCG emulation; auto: KVM only after a probe
# guest really boots under it (nested KVM can hang in early boot).
VIRT_TYPE = env_choice("VIRT_TYPE", "auto", ("auto", "kvm", "qemu"))
_CACHE_ROOT = Path("/var/cache") if os.geteuid() == 0 else Path.home() / ".cache"
IMAGE_CACHE_DIR = env_path("IMAGE_CACHE_DIR", _CACHE_ROOT / "kernellab" / "images")
# Per-VM files (qcow2 overlay, console logs): on the hypervisor host, readable
# by libvirt's qemu user.
_STATE_ROOT = Path("/var/lib") if os.geteuid() == 0 else DATA_DIR
VM_DIR = env_path("VM_DIR", _STATE_ROOT / "kernellab" / "vms")
# The hypervisor host this process's workers serve (queues host.<name>.<kind>).
KERNELLAB_HOST_NAME = env_str("KERNELLAB_HOST_NAME", "local")
# A host whose libvirtd has not answered beat's check (every minute) for this
# long is lost: its labs turn Failed with the reason (vms.hosts.host_check).
# Long enough for a libvirtd restart, which guests survive.
HOST_LOST_AFTER_SECONDS = env_int("HOST_LOST_AFTER_SECONDS", 180, minimum=0)
# Quotas: guests running at once per student, and per cohort.
VM_MAX_PER_STUDENT = env_int("VM_MAX_PER_STUDENT", 1, minimum=1)
VM_MAX_PER_COHORT = env_int("VM_MAX_PER_COHORT", 60, minimum=1)
# An idle VM (no console input) is stopped after this; any VM is destroyed
# when it has lived this long.
VM_IDLE_STOP_MINUTES = env_int("VM_IDLE_STOP_MINUTES", 30, minimum=1)
VM_LIFETIME_HOURS = env_int("VM_LIFETIME_HOURS", 24 * 7, minimum=1)
VM_BOOT_TIMEOUT_SECONDS = env_int("VM_BOOT_TIMEOUT_SECONDS", 180, minimum=10)
# Booted-and-saved guests kept ready per host and VM size: a start restores one
# in about a second instead of booting. 0 turns the pool off.
VM_POOL_SIZE = env_int("VM_POOL_SIZE", 2, minimum=0)
# Files a student moves in and out of their running guest from the console page
# (vms.guest_files), at most this large each way.
VM_FILE_MAX_BYTES = env_int("VM_FILE_MAX_BYTES", 16 * 1024 * 1024, minimum=1024)

# --- Confinement: what one guest may take of its host (vms.confinement) ---------------
# CPU: percent of one host CPU per vCPU, for all of a guest's QEMU threads
# (libvirt <cputune>, the guest's cgroup).
VM_CPU_PERCENT = env_int("VM_CPU_PERCENT", 100, minimum=1)
# When guests compete for the host's cores, a grading guest (a Submit's clean
# guest) weighs this percent of a lab guest (cgroup cpu shares): students at
# their consoles, and Starts booting, come before a wave of Submits.
GRADING_CPU_WEIGHT_PERCENT = env_int("GRADING_CPU_WEIGHT_PERCENT", 25, minimum=1)
# Memory: a guest's QEMU may use its RAM plus this much (device state, the
# disk's page cache; under TCG its 1 GiB translation cache comes on top) before
# its memory cgroup reclaims and, at worst, the kernel kills that QEMU alone.
VM_MEMORY_OVERHEAD_MIB = env_int("VM_MEMORY_OVERHEAD_MIB", 512, minimum=64)
# Disk: bytes and operations per second each way, enforced by QEMU itself
# (the disk's <iotune>); 0 leaves that one uncapped.
VM_DISK_READ_BYTES_PER_SEC = env_int("VM_DISK_READ_BYTES_PER_SEC", 100 * 1024 * 1024, minimum=0)
VM_DISK_WRITE_BYTES_PER_SEC = env_int("VM_DISK_WRITE_BYTES_PER_SEC", 50 * 1024 * 1024, minimum=0)
VM_DISK_READ_IOPS = env_int("VM_DISK_READ_IOPS", 2000, minimum=0)
VM_DISK_WRITE_IOPS = env_int("VM_DISK_WRITE_IOPS", 1000, minimum=0)
# A host whose VM_DIR file system has less free space than this (the larger
# of the two) starts, resumes, resets and pool-fills no guest: each guest's
# overlay grows as its student writes (up to the image's virtual size).
HOST_DISK_MIN_FREE_MIB = env_int("HOST_DISK_MIN_FREE_MIB", 2048, minimum=0)
HOST_DISK_MIN_FREE_PERCENT = env_int("HOST_DISK_MIN_FREE_PERCENT", 5, minimum=0)

# --- Exercises ----------------------------------------------------------------------
# One folder per exercise (exercises/catalogue/<slug>/). Validated at start-up
# (the "exercises" system check) and copied into the database by sync_exercises.
EXERCISES_CATALOGUE_DIR = env_path("EXERCISES_CATALOGUE_DIR", BASE_DIR / "exercises" / "catalogue")
# A Check or Submit still waiting or running this long after its checker's
# timeout lost its worker: the reaper marks it as an error so the student can
# try again.
GRADING_STUCK_GRACE_MINUTES = env_int("GRADING_STUCK_GRACE_MINUTES", 10, minimum=1)

# --- Consoles -----------------------------------------------------------------------
# A console ticket is spent on first use and expires after this many seconds.
CONSOLE_TOKEN_SECONDS = env_int("CONSOLE_TOKEN_SECONDS", 60, minimum=5)
# Output a late joiner or a reconnecting browser gets first.
CONSOLE_SCROLLBACK_BYTES = env_int("CONSOLE_SCROLLBACK_BYTES", 256 * 1024, minimum=4096)
# How long the web waits for a lab's host to hand over its console logs when
# the lab runs on another machine (vms.guest_logs).
GUEST_LOG_WAIT_SECONDS = env_int("GUEST_LOG_WAIT_SECONDS", 5, minimum=1)
# How long a web process keeps a console open after its last viewer left.
CONSOLE_LINGER_SECONDS = env_int("CONSOLE_LINGER_SECONDS", 15, minimum=0)
# Students' console sessions, recorded as asciicast v2, kept this many days.
CONSOLE_RECORDING_DIR = env_path("CONSOLE_RECORDING_DIR", DATA_DIR / "recordings")
CONSOLE_RECORDING_MAX_BYTES = env_int("CONSOLE_RECORDING_MAX_BYTES", 20 * 1024 * 1024, minimum=0)
CONSOLE_RECORDING_RETENTION_DAYS = env_int("CONSOLE_RECORDING_RETENTION_DAYS", 90, minimum=1)
# --- Console limits (what one student can make a web process hold) -------------------
# Recordings: per session, and in total per VM and per student (bytes on disk,
# all retained sessions); a recording that reaches a limit ends with a marker.
CONSOLE_RECORDING_VM_MAX_BYTES = env_int(
    "CONSOLE_RECORDING_VM_MAX_BYTES", 64 * 1024 * 1024, minimum=0
)
CONSOLE_RECORDING_USER_MAX_BYTES = env_int(
    "CONSOLE_RECORDING_USER_MAX_BYTES", 256 * 1024 * 1024, minimum=0
)
# Open consoles per VM: the owner's read-write sockets, and read-only watchers.
CONSOLE_RW_SESSIONS_PER_VM = env_int("CONSOLE_RW_SESSIONS_PER_VM", 4, minimum=1)
CONSOLE_RO_SESSIONS_PER_VM = env_int("CONSOLE_RO_SESSIONS_PER_VM", 8, minimum=1)
# Keystrokes waiting for a guest that does not read its console, at most.
CONSOLE_INPUT_PENDING_MAX_BYTES = env_int(
    "CONSOLE_INPUT_PENDING_MAX_BYTES", 256 * 1024, minimum=64 * 1024
)

# --- Rate limits (labplatform.ratelimits) --------------------------------------------
# Requests per user and period ("10/min", "100/hour") for what costs the hosts
# work; over the limit: 429 with Retry-After, and a message on the page.
RATE_LIMITS = {
    # Start, Stop, Resume, Reset, Destroy of a lab VM
    "lab": env_str("RATE_LIMIT_LAB", "20/min"),
    # console tickets (each reconnect of a console page asks for one)
    "console": env_str("RATE_LIMIT_CONSOLE", "30/min"),
    "check": env_str("RATE_LIMIT_CHECK", "10/min"),
    "submit": env_str("RATE_LIMIT_SUBMIT", "5/min"),
}
# Checks and Submits of one student waiting or being graded at once, across
# exercises (one per exercise at most, whatever this says).
GRADING_MAX_PER_STUDENT = env_int("GRADING_MAX_PER_STUDENT", 2, minimum=1)
# Login: after LOGIN_FAILURE_LIMIT wrong passwords for one username from one
# address, that pair is refused for LOGIN_LOCKOUT_MINUTES (django-axes; its
# records are in the database, shared by every web process). A successful
# login resets the count. The address is the client's as uvicorn saw it
# (--proxy-headers trusts only the local proxy's X-Forwarded-For).
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("LOGIN_LOCKOUT_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_IPWARE_META_PRECEDENCE_ORDER = ("REMOTE_ADDR",)
AXES_LOCKOUT_CALLABLE = "labplatform.ratelimits.login_locked_out"

# --- Pipeline API (/api/v1/) and webhooks ---------------------------------------------
# Requests per token and period ("120/min", "2000/hour"), counted in the Django
# cache (Redis: the limit is per token, not per web process).
API_RATE_LIMIT = env_str("API_RATE_LIMIT", "120/min")
# How long a create's Idempotency-Key is remembered.
API_IDEMPOTENCY_HOURS = env_int("API_IDEMPOTENCY_HOURS", 24, minimum=1)
# The largest tar.gz a Submit upload may send (the exercise's own caps apply
# to its files after that).
API_UPLOAD_MAX_BYTES = env_int("API_UPLOAD_MAX_BYTES", 8 * 1024 * 1024, minimum=1024)
# A failed webhook delivery is retried after base, 2*base, 4*base... seconds,
# WEBHOOK_MAX_TRIES tries in all (the default spans about two hours).
WEBHOOK_RETRY_BASE_SECONDS = env_int("WEBHOOK_RETRY_BASE_SECONDS", 30, minimum=1)
WEBHOOK_MAX_TRIES = env_int("WEBHOOK_MAX_TRIES", 8, minimum=1)
# Webhooks go to public addresses only (no loopback, private, link-local such
# as the cloud metadata service, CGNAT, multicast...: labplatform/api/ssrf.py).
# True lets a development machine or a test use a receiver on its own network.
WEBHOOK_ALLOW_PRIVATE_NETWORKS = env_bool("WEBHOOK_ALLOW_PRIVATE_NETWORKS", False)
NINJA_PAGINATION_MAX_LIMIT = 100

# --- Security ---------------------------------------------------------------------
CSRF_FAILURE_VIEW = "labplatform.views.csrf_failure"
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # the console page's JS reads it for POSTs
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if PRODUCTION:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    # The container's health check asks over plain HTTP on the loopback
    # (labplatform/ops/healthcheck.py); /healthz says nothing private.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
    # No SECURE_PROXY_SSL_HEADER: Django would believe X-Forwarded-Proto from
    # any client. uvicorn --proxy-headers turns it into the request's scheme
    # for the proxy's addresses only (FORWARDED_ALLOW_IPS), and ignores it
    # from anyone else.
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True

# --- Observability (labplatform.observability) -------------------------------------
# /metrics answers staff sessions, and a scraper sending "Authorization: Bearer
# <METRICS_TOKEN>" (empty: no token accepted); anyone else gets 404.
METRICS_TOKEN = env_str("METRICS_TOKEN", "")
# /healthz waits this long for a libvirt host, and reuses its answer this long.
HEALTH_HOST_TIMEOUT_SECONDS = env_int("HEALTH_HOST_TIMEOUT_SECONDS", 2, minimum=1)
HEALTH_HOST_CACHE_SECONDS = env_int("HEALTH_HOST_CACHE_SECONDS", 10, minimum=0)
# Beat sends every queue a heartbeat task this often; a queue whose last one
# is older than STALE_AFTER intervals has no worker taking its tasks.
WORKER_HEARTBEAT_SECONDS = env_int("WORKER_HEARTBEAT_SECONDS", 30, minimum=5)
WORKER_HEARTBEAT_STALE_AFTER = env_int("WORKER_HEARTBEAT_STALE_AFTER", 3, minimum=2)
WORKER_HEARTBEAT_KEY_PREFIX = env_str("WORKER_HEARTBEAT_KEY_PREFIX", "kernellab:heartbeat:")
CELERY_BEAT_SCHEDULE["worker-heartbeats"] = {
    "task": "observability.heartbeat_all",
    "schedule": float(WORKER_HEARTBEAT_SECONDS),
}
# text for a terminal; json (one object per line) for a log shipper. Records
# logged while a task works on a VM or an attempt carry its id either way.
LOG_FORMAT = env_choice("LOG_FORMAT", "text", ("text", "json"))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"ids": {"()": "labplatform.observability.logcontext.LogContextFilter"}},
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)-7s %(name)s:%(context)s %(message)s"},
        "json": {"()": "labplatform.observability.logcontext.JsonFormatter"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["ids"]}
    },
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        "asyncio": {"level": "WARNING"},
    },
}
