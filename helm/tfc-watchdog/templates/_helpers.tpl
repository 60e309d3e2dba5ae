{{/* The chart name, or nameOverride. */}}
{{- define "tfc-watchdog.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The full resource name: fullnameOverride, <release> when it contains the chart name,
else <release>-<chart>. */}}
{{- define "tfc-watchdog.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "tfc-watchdog.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tfc-watchdog.labels" -}}
helm.sh/chart: {{ include "tfc-watchdog.chart" . }}
{{ include "tfc-watchdog.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "tfc-watchdog.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tfc-watchdog.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "tfc-watchdog.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tfc-watchdog.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "tfc-watchdog.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* Every check of the values that needs a clear message: the schema's own errors name
only the failed keyword, so the checks a first install is likely to trip live here. */}}
{{- define "tfc-watchdog.validate" -}}
{{- include "tfc-watchdog.validateToken" . }}
{{- include "tfc-watchdog.validateGitlabToken" . }}
{{- if not .Values.image.repository }}
{{- fail "image.repository: set the image to run. Nothing publishes one for this chart: build it with `make image` (docker or podman), push it to a registry your cluster pulls from, then set image.repository (and image.tag or image.digest)" }}
{{- end }}
{{- if eq (toString .Values.image.tag) "latest" }}
{{- fail "image.tag: `latest` is not a version; set the tag you built and pushed (empty = the chart's appVersion), or image.digest" }}
{{- end }}
{{- if and (include "tfc-watchdog.usesTfc" .) (not .Values.config.tfc.organizations) }}
{{- fail "config.tfc.organizations: list the HCP Terraform / TFE organizations to watch (e.g. --set 'config.tfc.organizations={my-org}'), or set config.tfc=null to watch only s3_backend, gcs_backend or gitlab" }}
{{- end }}
{{- $listen := .Values.config.listen | default "0.0.0.0:9877" | toString }}
{{- $host := regexReplaceAll ":[0-9]+$" $listen "" | trimAll "[]" | lower }}
{{- if or (eq $host "localhost" "::1") (hasPrefix "127." $host) }}
{{- fail (printf "config.listen: %s is a loopback address: the kubelet's probes and Prometheus could never reach it; listen on 0.0.0.0:PORT (or [::]:PORT)" (toString .Values.config.listen)) }}
{{- end }}
{{- end }}

{{/* The matchers that scope an alert to this release's series: the Service's name is the
`job` the Prometheus Operator gives its targets, and the namespace tells two releases of
the same name apart. */}}
{{- define "tfc-watchdog.alertMatchers" -}}
job="{{ include "tfc-watchdog.fullname" . }}",namespace="{{ .Release.Namespace }}"
{{- end }}

{{- define "tfc-watchdog.alertSelector" -}}
{{ "{" }}{{ include "tfc-watchdog.alertMatchers" . }}{{ "}" }}
{{- end }}

{{/* The range of the rate alerts: 3 intervals, at least 10 minutes. A cycle's counters
move once per interval, so a fixed 10m window holds no cycle at all most of the time when
the interval is long, and the alert never holds through its `for`. */}}
{{- define "tfc-watchdog.alertWindow" -}}
{{- $seconds := max 600 (mul 3 (include "tfc-watchdog.intervalSeconds" . | float64 | ceil | int)) }}
{{- if eq (mod $seconds 60) 0 }}{{ div $seconds 60 }}m{{ else }}{{ $seconds }}s{{ end }}
{{- end }}

{{/* "true" when the config watches HCP Terraform / TFE (config.tfc set): only then is
an API token needed. A config with only s3_backend, gcs_backend or gitlab (`tfc: null`) runs without
one. */}}
{{- define "tfc-watchdog.usesTfc" -}}
{{- if .Values.config.tfc }}true{{ end }}
{{- end }}

{{/* Exactly one token source when TFC is watched; fails the render otherwise. */}}
{{- define "tfc-watchdog.validateToken" -}}
{{- if and .Values.token.value .Values.token.existingSecret }}
{{- fail "token: set either token.value or token.existingSecret, not both (existingSecret names a Secret you manage; value makes the chart render one)" }}
{{- end }}
{{- if and (include "tfc-watchdog.usesTfc" .) (not (or .Values.token.value .Values.token.existingSecret)) }}
{{- fail "token: set token.existingSecret (an existing Secret holding the API token) or token.value" }}
{{- end }}
{{- end }}

{{/* "true" when the config watches GitLab-managed Terraform state (config.gitlab set). */}}
{{- define "tfc-watchdog.usesGitlab" -}}
{{- if .Values.config.gitlab }}true{{ end }}
{{- end }}

{{/* Exactly one GitLab token source when GitLab is watched; fails the render otherwise. */}}
{{- define "tfc-watchdog.validateGitlabToken" -}}
{{- if and .Values.gitlabToken.value .Values.gitlabToken.existingSecret }}
{{- fail "gitlabToken: set either gitlabToken.value or gitlabToken.existingSecret, not both" }}
{{- end }}
{{- if and (include "tfc-watchdog.usesGitlab" .) (not (or .Values.gitlabToken.value .Values.gitlabToken.existingSecret)) }}
{{- fail "gitlabToken: config.gitlab is set: set gitlabToken.existingSecret (an existing Secret holding a GitLab project access token) or gitlabToken.value" }}
{{- end }}
{{- end }}

{{- define "tfc-watchdog.gitlabSecretName" -}}
{{- .Values.gitlabToken.existingSecret | default (printf "%s-gitlab" (include "tfc-watchdog.fullname" .)) }}
{{- end }}

{{- define "tfc-watchdog.gitlabSecretKey" -}}
{{- if .Values.gitlabToken.existingSecret }}{{ .Values.gitlabToken.existingSecretKey }}{{ else }}token{{ end }}
{{- end }}

{{/* The GitLab port, from config.gitlab.address (443 unless it names another). */}}
{{- define "tfc-watchdog.gitlabPort" -}}
{{- $address := (.Values.config.gitlab | default dict).address | default "https://gitlab.com" }}
{{- $port := regexFind ":[0-9]+" (regexReplaceAll "^[a-z]+://" $address "" | splitList "/" | first) }}
{{- if $port }}{{ trimPrefix ":" $port }}{{ else if hasPrefix "http://" $address }}80{{ else }}443{{ end }}
{{- end }}

{{- define "tfc-watchdog.tokenSecretName" -}}
{{- .Values.token.existingSecret | default (include "tfc-watchdog.fullname" .) }}
{{- end }}

{{- define "tfc-watchdog.tokenSecretKey" -}}
{{- if .Values.token.existingSecret }}{{ .Values.token.existingSecretKey }}{{ else }}token{{ end }}
{{- end }}

{{/* Where the pod finds its files. */}}
{{- define "tfc-watchdog.configDir" -}}/etc/tfc-watchdog{{- end }}
{{- define "tfc-watchdog.tokenDir" -}}/var/run/secrets/tfc-watchdog{{- end }}
{{- define "tfc-watchdog.gitlabTokenDir" -}}/var/run/secrets/tfc-watchdog-gitlab{{- end }}
{{- define "tfc-watchdog.caDir" -}}/etc/ssl/tfc-watchdog{{- end }}
{{- define "tfc-watchdog.stateDir" -}}/var/lib/tfc-watchdog{{- end }}

{{/* The ops port, from config.listen (host:port). */}}
{{- define "tfc-watchdog.port" -}}
{{- .Values.config.listen | default "0.0.0.0:9877" | toString | splitList ":" | last }}
{{- end }}

{{/* The TFC/TFE API port, from config.tfc.address (443 unless it names another). */}}
{{- define "tfc-watchdog.apiPort" -}}
{{- $address := (.Values.config.tfc | default dict).address | default "https://app.terraform.io" }}
{{- $port := regexFind ":[0-9]+" (regexReplaceAll "^[a-z]+://" $address "" | splitList "/" | first) }}
{{- if $port }}{{ trimPrefix ":" $port }}{{ else if hasPrefix "http://" $address }}80{{ else }}443{{ end }}
{{- end }}

{{/* The S3-backend lock stores' port, from config.s3_backend.endpoint_url (AWS: 443). */}}
{{- define "tfc-watchdog.awsPort" -}}
{{- $address := (.Values.config.s3_backend | default dict).endpoint_url | default "https://aws" }}
{{- $port := regexFind ":[0-9]+" (regexReplaceAll "^[a-z]+://" $address "" | splitList "/" | first) }}
{{- if $port }}{{ trimPrefix ":" $port }}{{ else if hasPrefix "http://" $address }}80{{ else }}443{{ end }}
{{- end }}

{{/* The gcs backend's port, from config.gcs_backend.endpoint_url (storage.googleapis.com:
443). */}}
{{- define "tfc-watchdog.gcsPort" -}}
{{- $address := (.Values.config.gcs_backend | default dict).endpoint_url | default "https://storage.googleapis.com" }}
{{- $port := regexFind ":[0-9]+" (regexReplaceAll "^[a-z]+://" $address "" | splitList "/" | first) }}
{{- if $port }}{{ trimPrefix ":" $port }}{{ else if hasPrefix "http://" $address }}80{{ else }}443{{ end }}
{{- end }}

{{/* config.interval in seconds (45s, 30m, 2h, 1d, 2h30m or plain seconds), for alerts. */}}
{{- define "tfc-watchdog.intervalSeconds" -}}
{{- include "tfc-watchdog.durationSeconds" (.Values.config.interval | default "60s") }}
{{- end }}

{{/* config.tfc.full_scan_interval in seconds (10m when unset; 0 = every cycle). */}}
{{- define "tfc-watchdog.fullScanSeconds" -}}
{{- $tfc := .Values.config.tfc | default dict }}
{{- include "tfc-watchdog.durationSeconds" (hasKey $tfc "full_scan_interval" | ternary $tfc.full_scan_interval "10m" | default 0) }}
{{- end }}

{{/* The range of FastPathDisabled: it must bridge the fast path's hourly recheck, when the
gauge reads 0 until the next full walk finds the same miss (up to full_scan_interval plus a
cycle later): full_scan_interval plus 2 intervals, at least 30 minutes. */}}
{{- define "tfc-watchdog.fastPathWindow" -}}
{{- $fast := include "tfc-watchdog.fullScanSeconds" . | float64 | ceil | int }}
{{- $interval := include "tfc-watchdog.intervalSeconds" . | float64 | ceil | int }}
{{- $seconds := max 1800 (add $fast (mul 2 $interval)) }}
{{- if eq (mod $seconds 60) 0 }}{{ div $seconds 60 }}m{{ else }}{{ $seconds }}s{{ end }}
{{- end }}

{{/* A duration (45s, 30m, 2h, 1d, 2h30m or plain seconds) in seconds. */}}
{{- define "tfc-watchdog.durationSeconds" -}}
{{- $v := . | toString | trim }}
{{- if regexMatch "^[0-9]+(\\.[0-9]+)?$" $v }}
{{- $v }}
{{- else }}
{{- $d := regexFind "[0-9]+d" $v | trimSuffix "d" | default "0" | atoi }}
{{- $h := regexFind "[0-9]+h" $v | trimSuffix "h" | default "0" | atoi }}
{{- $m := regexFind "[0-9]+m" $v | trimSuffix "m" | default "0" | atoi }}
{{- $s := regexFind "[0-9]+s" $v | trimSuffix "s" | default "0" | atoi }}
{{- add (mul $d 86400) (mul $h 3600) (mul $m 60) $s }}
{{- end }}
{{- end }}

{{/* The config file as the pod sees it: the values tree plus the paths the chart mounts. */}}
{{- define "tfc-watchdog.config" -}}
{{- $config := deepCopy .Values.config }}
{{- if include "tfc-watchdog.usesTfc" . }}
{{- $tfc := deepCopy .Values.config.tfc }}
{{- $_ := set $tfc "token_file" (printf "%s/token" (include "tfc-watchdog.tokenDir" .)) }}
{{- if .Values.caBundle.existingConfigMap }}
{{- $_ := set $tfc "ca_bundle" (printf "%s/%s" (include "tfc-watchdog.caDir" .) .Values.caBundle.key) }}
{{- end }}
{{- $_ := set $config "tfc" $tfc }}
{{- else }}
{{- $_ := set $config "tfc" nil }}
{{- end }}
{{- if include "tfc-watchdog.usesGitlab" . }}
{{- $gitlab := deepCopy .Values.config.gitlab }}
{{- $_ := set $gitlab "token_file" (printf "%s/token" (include "tfc-watchdog.gitlabTokenDir" .)) }}
{{- $_ := set $config "gitlab" $gitlab }}
{{- end }}
{{- $_ := set $config "state_file" (printf "%s/state.json" (include "tfc-watchdog.stateDir" .)) }}
{{- toYaml $config }}
{{- end }}

{{/* The settings of the rendered config that the daemon reads only at start (its
RESTART_ONLY), as JSON with sorted keys: what checksum/restart-config hashes. */}}
{{- define "tfc-watchdog.restartOnlyConfig" -}}
{{- pick (include "tfc-watchdog.config" . | fromYaml) "listen" "state_file" "tfc" "s3_backend" "gcs_backend" "gitlab" | toJson }}
{{- end }}

{{/* The hash of the data of the Secret the chart renders (not its labels, which change
with the chart version); with existingSecret only the reference can be hashed: the chart
never sees that Secret's data. */}}
{{- define "tfc-watchdog.secretChecksum" -}}
{{- if .Values.token.existingSecret }}
{{- printf "%s/%s" .Values.token.existingSecret .Values.token.existingSecretKey | sha256sum }}
{{- else }}
{{- (include (print $.Template.BasePath "/secret.yaml") . | fromYaml).data | toJson | sha256sum }}
{{- end }}
{{- end }}

{{/* The same for the GitLab token, which the daemon reads only at start: a change in the
chart's own Secret rolls the pod. */}}
{{- define "tfc-watchdog.gitlabSecretChecksum" -}}
{{- if .Values.gitlabToken.existingSecret }}
{{- printf "%s/%s" .Values.gitlabToken.existingSecret .Values.gitlabToken.existingSecretKey | sha256sum }}
{{- else }}
{{- .Values.gitlabToken.value | sha256sum }}
{{- end }}
{{- end }}
