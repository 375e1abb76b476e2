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
