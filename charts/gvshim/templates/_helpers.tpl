{{/*
Names. A parent chart that depends on this one can use "gvshim.runtimeClassName" to fill its pods'
runtimeClassName: {{ include "gvshim.runtimeClassName" .Subcharts.gvshim }}.
*/}}
{{- define "gvshim.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "gvshim.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Object names of the node part (kept under 63 characters with their suffixes). */}}
{{- define "gvshim.installer.name" -}}
{{- printf "%s-node" (include "gvshim.fullname" . | trunc 52 | trimSuffix "-") -}}
{{- end -}}
{{- define "gvshim.retire.name" -}}
{{- printf "%s-node-retire" (include "gvshim.fullname" . | trunc 45 | trimSuffix "-") -}}
{{- end -}}

{{/* The RuntimeClass pods name: the chart's own or an existing one. */}}
{{- define "gvshim.runtimeClassName" -}}
{{- .Values.sandbox.gvisor.runtimeClass.name -}}
{{- end -}}

{{- define "gvshim.labels" -}}
app.kubernetes.io/name: {{ include "gvshim.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "gvshim.installer.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gvshim.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: node-installer
{{- end -}}

{{/* The installer image: repository@digest, else repository:tag (tag defaults to the appVersion). */}}
{{- define "gvshim.installer.image" -}}
{{- $img := .Values.sandbox.gvisor.installer.image -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $img.repository $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $img.repository (default .Chart.AppVersion $img.tag) -}}
{{- end -}}
{{- end -}}

{{/*
The master switch: sandbox.gvisor.enabled, or global.sandbox.gvisor.enabled so that a parent chart can turn on
gVisor for its own pods and this chart with one value. Renders "true" or nothing.
*/}}
{{- define "gvshim.enabled" -}}
{{- $global := dig "sandbox" "gvisor" "enabled" false (.Values.global | default dict) -}}
{{- if or .Values.sandbox.gvisor.enabled $global -}}true{{- end -}}
{{- end -}}

{{/* Node part on/off: the master switch and the installer switch. */}}
{{- define "gvshim.installer.enabled" -}}
{{- if and (include "gvshim.enabled" .) .Values.sandbox.gvisor.installer.enabled -}}true{{- end -}}
{{- end -}}

{{/* Executor part (RAGFlow's executor manager): object names, selector labels, the gateway image. */}}
{{- define "gvshim.executor.pool.name" -}}
{{- printf "%s-pool" (include "gvshim.fullname" . | trunc 50 | trimSuffix "-") -}}
{{- end -}}
{{- define "gvshim.executor.gateway.name" -}}
{{- printf "%s-gateway" (include "gvshim.fullname" . | trunc 47 | trimSuffix "-") -}}
{{- end -}}
{{- define "gvshim.executor.secret.name" -}}
{{- default (printf "%s-gateway-token" (include "gvshim.fullname" . | trunc 41 | trimSuffix "-")) .Values.executor.auth.existingSecret -}}
{{- end -}}
{{- define "gvshim.executor.pool.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gvshim.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: executor-pool
{{- end -}}
{{- define "gvshim.executor.gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gvshim.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: executor-gateway
{{- end -}}
{{- define "gvshim.executor.image" -}}
{{- if .digest -}}
{{- printf "%s@%s" .repository .digest -}}
{{- else -}}
{{- printf "%s:%s" .repository (default "latest" .tag) -}}
{{- end -}}
{{- end -}}
{{- define "gvshim.executor.gateway.image" -}}
{{- if .Values.executor.gateway.image.repository -}}
{{- include "gvshim.executor.image" (merge (dict "tag" (default .Chart.AppVersion .Values.executor.gateway.image.tag)) .Values.executor.gateway.image) -}}
{{- else -}}
{{- include "gvshim.installer.image" . -}}
{{- end -}}
{{- end -}}
{{/* The node's Execute socket_dir (where the gateway finds the pool pods). */}}
{{- define "gvshim.executor.socketDir" -}}
{{- dig "execute" "socket_dir" "/run/gvshim/execute" .Values.sandbox.gvisor.config -}}
{{- end -}}

{{/*
Executor preconditions, checked by every executor template: no pool without gVisor (a pool pod under runc would
run untrusted code without a sandbox), no pool without the nodes' Execute service, and an image to run.
*/}}
{{- define "gvshim.executor.check" -}}
{{- if not (include "gvshim.enabled" .) -}}
{{- fail "executor.enabled=true needs sandbox.gvisor.enabled=true: the executor pool runs untrusted code and must run under the gVisor RuntimeClass (refusing to render it without)" -}}
{{- end -}}
{{- if not (dig "execute" "enabled" false .Values.sandbox.gvisor.config) -}}
{{- fail "executor.enabled=true needs sandbox.gvisor.config.execute.enabled=true: the pool pods' snippets run through the nodes' Execute service" -}}
{{- end -}}
{{- if not .Values.executor.pool.image.repository -}}
{{- fail "executor.pool.image.repository is required: an image with python3 and node for the pool pods" -}}
{{- end -}}
{{- end -}}
{{/* RAGFlow's SANDBOX_TIMEOUT notation ("10s", "2m", "1m30s") in milliseconds. */}}
{{- define "gvshim.executor.timeoutMs" -}}
{{- $m := regexFind "^[0-9]+m" . | trimSuffix "m" | default "0" | atoi -}}
{{- $s := regexFind "[0-9]+s$" . | trimSuffix "s" | default "0" | atoi -}}
{{- mul (add (mul $m 60) $s) 1000 -}}
{{- end -}}
