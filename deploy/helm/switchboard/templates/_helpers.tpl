{{/*
Names, labels and the few derived values every template shares. Cross-field rules the JSON schema
cannot phrase readably are checked here with `fail`, so a bad install stops with one clear line.
*/}}

{{- define "switchboard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "switchboard.fullname" -}}
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

{{- define "switchboard.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "switchboard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "switchboard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: relay
{{- end }}

{{/* Labels without a component, for objects that are not the relay (the built-in Redis). */}}
{{- define "switchboard.baseLabels" -}}
helm.sh/chart: {{ include "switchboard.chart" . }}
app.kubernetes.io/name: {{ include "switchboard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: switchboard
{{- end }}

{{- define "switchboard.labels" -}}
{{ include "switchboard.baseLabels" . }}
app.kubernetes.io/component: relay
{{- end }}

{{- define "switchboard.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "switchboard.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "switchboard.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{- define "switchboard.secretName" -}}
{{- if .Values.secrets.create }}{{ include "switchboard.fullname" . }}{{ else }}{{ .Values.secrets.existingSecret }}{{ end }}
{{- end }}

{{- define "switchboard.tenantsConfigMapName" -}}
{{- default (printf "%s-tenants" (include "switchboard.fullname" .)) .Values.tenants.existingConfigMap }}
{{- end }}

{{- define "switchboard.tokensSecretName" -}}
{{- default (printf "%s-twilio-tokens" (include "switchboard.fullname" .)) .Values.tenants.existingTokensSecret }}
{{- end }}

{{- define "switchboard.hasTenants" -}}
{{- if or .Values.tenants.registry .Values.tenants.existingConfigMap }}true{{ end }}
{{- end }}

{{- define "switchboard.hasTokens" -}}
{{- if or .Values.tenants.authTokens .Values.tenants.existingTokensSecret }}true{{ end }}
{{- end }}

{{/* Pod termination grace: preStop sleep + drain timeout + margin, the one place it is computed. */}}
{{- define "switchboard.terminationGracePeriodSeconds" -}}
{{- add .Values.drain.preStopSleepSeconds (include "switchboard.drainTimeoutSeconds" .) .Values.drain.terminationMarginSeconds }}
{{- end }}

{{/* DRAIN_MODE: drain.mode, or migrate with Redis and wait without. */}}
{{- define "switchboard.drainMode" -}}
{{- if .Values.drain.mode }}{{ .Values.drain.mode }}{{ else if include "switchboard.hasRedis" . }}migrate{{ else }}wait{{ end }}
{{- end }}

{{/* DRAIN_TIMEOUT_SECONDS: short when calls migrate, the longest call when they wait. */}}
{{- define "switchboard.drainTimeoutSeconds" -}}
{{- if eq (include "switchboard.drainMode" .) "migrate" }}{{ .Values.drain.migrateTimeoutSeconds }}{{ else }}{{ .Values.drain.timeoutSeconds }}{{ end }}
{{- end }}

{{/* The HTTPRoute's hostnames: gateway.hostnames, else ingress.host. */}}
{{- define "switchboard.routeHostnames" -}}
{{- toJson (.Values.gateway.hostnames | default (list .Values.ingress.host) | compact) }}
{{- end }}

{{/* PUBLIC_URL: config.publicUrl, else https://<ingress.host> (ingress on), else https://<first route
hostname> (gateway on; a wildcard is refused in switchboard.validate). */}}
{{- define "switchboard.publicUrl" -}}
{{- $routeHost := first (include "switchboard.routeHostnames" . | fromJsonArray) | default "" }}
{{- if .Values.config.publicUrl }}
{{- .Values.config.publicUrl | trimSuffix "/" }}
{{- else if and .Values.ingress.enabled .Values.ingress.host }}
{{- printf "https://%s" .Values.ingress.host }}
{{- else if and .Values.gateway.enabled $routeHost (not (hasPrefix "*" $routeHost)) }}
{{- printf "https://%s" $routeHost }}
{{- end }}
{{- end }}

{{/* Reachable by callers or talking to a paid model: ingress or gateway on, or a real provider. */}}
{{- define "switchboard.exposed" -}}
{{- $provider := .Values.config.modelProvider }}
{{- if or .Values.ingress.enabled .Values.gateway.enabled (has $provider (list "openai" "azure")) (and (not $provider) (or .Values.secrets.openaiApiKey .Values.secrets.azureOpenaiApiKey)) }}true{{ end }}
{{- end }}

{{- define "switchboard.scaled" -}}
{{- if or .Values.autoscaling.enabled .Values.keda.enabled }}true{{ end }}
{{- end }}

{{/* The default install: one pod, not exposed, not autoscaled. Generated secrets are acceptable only here. */}}
{{- define "switchboard.trial" -}}
{{- if not (or (include "switchboard.exposed" .) (include "switchboard.scaled" .) (gt (int .Values.replicaCount) 1)) }}true{{ end }}
{{- end }}

{{/* serviceMonitor.enabled: true/false as given; unset (null) = on when an autoscaler needs the metric. */}}
{{- define "switchboard.serviceMonitorEnabled" -}}
{{- $v := .Values.serviceMonitor.enabled }}
{{- if kindIs "bool" $v }}{{ if $v }}true{{ end }}{{ else if include "switchboard.scaled" . }}true{{ end }}
{{- end }}

{{- define "switchboard.redisName" -}}
{{- printf "%s-redis" (include "switchboard.fullname" .) }}
{{- end }}

{{/* The Secret and key holding REDIS_PASSWORD, or nothing when Redis has no password. */}}
{{- define "switchboard.redisPasswordSecret" -}}
{{- if .Values.redis.auth.existingSecret }}{{ .Values.redis.auth.existingSecret }}
{{- else if .Values.redis.enabled }}{{ include "switchboard.redisName" . }}
{{- end }}
{{- end }}

{{- define "switchboard.redisPasswordKey" -}}
{{- if .Values.redis.auth.existingSecret }}{{ .Values.redis.auth.existingSecretPasswordKey }}{{ else }}REDIS_PASSWORD{{ end }}
{{- end }}

{{- define "switchboard.hasRedis" -}}
{{- if or .Values.redis.enabled .Values.redis.url .Values.redis.existingSecret }}true{{ end }}
{{- end }}

{{/* Rules that span several keys, checked once (rendered from deployment.yaml). */}}
{{- define "switchboard.validate" -}}
{{- if and .Values.autoscaling.enabled .Values.keda.enabled }}
{{- fail "autoscaling.enabled and keda.enabled are both true: choose one (KEDA creates its own HPA, and two HPAs on one Deployment fight)" }}
{{- end }}
{{- if and (not .Values.secrets.create) (not .Values.secrets.existingSecret) }}
{{- fail "secrets.create is false: set secrets.existingSecret to the Secret holding STREAM_TOKEN_SECRET" }}
{{- end }}
{{- if and .Values.secrets.create .Values.secrets.existingSecret }}
{{- fail "secrets.create and secrets.existingSecret are both set: choose one" }}
{{- end }}
{{- if and .Values.redis.enabled (or .Values.redis.url .Values.redis.existingSecret) }}
{{- fail "redis.enabled (built-in Redis) and redis.url/redis.existingSecret (external) are both set: choose one" }}
{{- end }}
{{- if and .Values.redis.url (not .Values.secrets.create) }}
{{- fail "redis.url is stored in the chart Secret, but secrets.create is false: put REDIS_URL in your Secret and set redis.existingSecret to it" }}
{{- end }}
{{- if and .Values.redis.url .Values.redis.existingSecret }}
{{- fail "redis.url and redis.existingSecret are both set: choose one" }}
{{- end }}
{{- $scaled := include "switchboard.scaled" . }}
{{- if and (or $scaled (gt (int .Values.replicaCount) 1)) (not (include "switchboard.hasRedis" .)) }}
{{- fail "more than one replica needs shared state: set redis.url, redis.existingSecret or redis.enabled (pods would not see each other's calls, tokens or tenant changes)" }}
{{- end }}
{{- if and $scaled (gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) }}
{{- fail (printf "autoscaling.minReplicas (%v) is greater than autoscaling.maxReplicas (%v)" .Values.autoscaling.minReplicas .Values.autoscaling.maxReplicas) }}
{{- end }}
{{- if and $scaled (gt (int .Values.autoscaling.targetActiveCallsPerPod) (int .Values.autoscaling.podCapacityCalls)) }}
{{- fail (printf "autoscaling.targetActiveCallsPerPod (%v) is above autoscaling.podCapacityCalls (%v): pods would refuse calls before the autoscaler reacts" .Values.autoscaling.targetActiveCallsPerPod .Values.autoscaling.podCapacityCalls) }}
{{- end }}
{{- if and .Values.ingress.enabled (not .Values.ingress.host) }}
{{- fail "ingress.enabled needs ingress.host (Twilio reaches the relay through it)" }}
{{- end }}
{{- if and .Values.tenants.registry .Values.tenants.existingConfigMap }}
{{- fail "tenants.registry and tenants.existingConfigMap are both set: choose one" }}
{{- end }}
{{- if and .Values.tenants.authTokens .Values.tenants.existingTokensSecret }}
{{- fail "tenants.authTokens and tenants.existingTokensSecret are both set: choose one" }}
{{- end }}
{{- if and (include "switchboard.exposed" .) (not (or (include "switchboard.hasTenants" .) .Values.tenants.managedByAdminApi)) }}
{{- fail "an exposed relay (ingress or gateway on, or a real model provider) needs tenants: set tenants.registry or tenants.existingConfigMap (or tenants.managedByAdminApi when tenants are created through /v1/tenants); without them every caller reaches the demo tenant, or no one" }}
{{- end }}
{{- if and .Values.tenants.managedByAdminApi (not (and (include "switchboard.hasRedis" .) (or .Values.secrets.adminToken .Values.secrets.existingSecret))) }}
{{- fail "tenants.managedByAdminApi needs Redis (redis.*) to keep the tenants and an admin token (secrets.adminToken or ADMIN_TOKEN in secrets.existingSecret)" }}
{{- end }}
{{- if and (eq (include "switchboard.drainMode" .) "migrate") (not (include "switchboard.hasRedis" .)) }}
{{- fail "drain.mode migrate needs Redis (redis.*): the pod that takes a moved call reads it from there; set drain.mode wait" }}
{{- end }}
{{- if and (eq (include "switchboard.drainMode" .) "wait") (lt (int .Values.drain.timeoutSeconds) (int .Values.config.maxCallSeconds)) }}
{{- fail (printf "drain.timeoutSeconds (%v) is below config.maxCallSeconds (%v): every rollout and scale-down would cut calls longer than the drain" .Values.drain.timeoutSeconds .Values.config.maxCallSeconds) }}
{{- end }}
{{- if and (or .Values.ingress.enabled .Values.gateway.enabled) (lt (int .Values.ingress.websocketTimeoutSeconds) (int .Values.config.maxCallSeconds)) }}
{{- fail (printf "ingress.websocketTimeoutSeconds (%v) is below config.maxCallSeconds (%v): the proxy would cut long calls" .Values.ingress.websocketTimeoutSeconds .Values.config.maxCallSeconds) }}
{{- end }}
{{- if and .Values.secrets.create (not .Values.secrets.streamTokenSecret) (not (include "switchboard.trial" .)) }}
{{- fail "secrets.streamTokenSecret is empty: outside the one-pod trial give it (at least 32 characters, e.g. openssl rand -base64 48) or use secrets.existingSecret; a generated key changes on every helm template (Argo CD, Flux) and breaks calls between pods" }}
{{- end }}
{{- if and $scaled (eq (include "switchboard.serviceMonitorEnabled" .) "") (not .Values.metrics.podAnnotations) (not .Values.metrics.scrapedElsewhere) }}
{{- fail "autoscaling reads switchboard_active_calls from Prometheus, but serviceMonitor.enabled is false: leave it unset (or true), or set metrics.podAnnotations or metrics.scrapedElsewhere" }}
{{- end }}
{{- if and .Values.gateway.enabled (not .Values.gateway.parentRefs) }}
{{- fail "gateway.enabled needs gateway.parentRefs (the Gateway the HTTPRoute attaches to)" }}
{{- end }}
{{- if and .Values.gateway.enabled (not (or .Values.gateway.hostnames .Values.ingress.host)) }}
{{- fail "gateway.enabled needs gateway.hostnames or ingress.host (Twilio reaches the relay through it)" }}
{{- end }}
{{- if and .Values.gateway.enabled (not .Values.config.publicUrl) (not (and .Values.ingress.enabled .Values.ingress.host)) }}
{{- $routeHost := first (include "switchboard.routeHostnames" . | fromJsonArray) | default "" }}
{{- if hasPrefix "*" $routeHost }}
{{- fail (printf "gateway.hostnames[0] (%s) is a wildcard: set config.publicUrl to the https URL Twilio calls (PUBLIC_URL; Twilio signs webhooks against it)" $routeHost) }}
{{- end }}
{{- end }}
{{- if and .Values.redis.auth.password (not .Values.redis.enabled) }}
{{- fail "redis.auth.password is for the built-in Redis: for an external Redis put the password in a Secret and name it in redis.auth.existingSecret" }}
{{- end }}
{{- if and .Values.redis.auth.password .Values.redis.auth.existingSecret }}
{{- fail "redis.auth.password and redis.auth.existingSecret are both set: choose one" }}
{{- end }}
{{- if and .Values.redis.tls.caSecret .Values.redis.url (not (hasPrefix "rediss://" .Values.redis.url)) }}
{{- fail "redis.tls.caSecret needs a rediss:// redis.url" }}
{{- end }}
{{- if and .Values.redis.auth.username .Values.redis.enabled }}
{{- fail "redis.auth.username is for an external Redis with ACL users; the built-in Redis has the default user only" }}
{{- end }}
{{- if and (eq .Values.config.modelProvider "azure") (not (and .Values.config.azureEndpoint .Values.config.azureDeployment)) }}
{{- fail "config.modelProvider is azure: set config.azureEndpoint (https://<resource>.openai.azure.com) and config.azureDeployment (the realtime deployment); the relay refuses to start without them" }}
{{- end }}
{{- if and (eq .Values.config.tenantsFileMode "reconcile") (not (include "switchboard.hasTenants" .)) }}
{{- fail "config.tenantsFileMode reconcile needs tenants.registry or tenants.existingConfigMap (the file it makes the truth)" }}
{{- end }}
{{- if and .Values.redis.enabled (not (or .Values.redis.auth.password .Values.redis.auth.existingSecret)) (not (include "switchboard.trial" .)) }}
{{- fail "redis.auth.password is empty: outside the one-pod trial give it (e.g. openssl rand -hex 24) or redis.auth.existingSecret (key existingSecretPasswordKey) for the built-in Redis; a generated password changes on every helm template (Argo CD, Flux) and locks the relay out of Redis" }}
{{- end }}
{{- if and .Values.networkPolicy.enabled (has .Values.service.type (list "LoadBalancer" "NodePort")) (not (contains "ipBlock" (toJson .Values.networkPolicy.ingressFrom))) }}
{{- fail (printf "service.type %s with networkPolicy.enabled: its traffic arrives from node or load-balancer addresses (or the callers' own, with externalTrafficPolicy Local), which no pod selector in networkPolicy.ingressFrom matches; add ipBlock peers for those ranges (docs/kubernetes.md), or use ClusterIP behind an ingress or Gateway" .Values.service.type) }}
{{- end }}
{{- if and .Values.redis.tls.caSecret .Values.redis.enabled }}
{{- fail "redis.tls.caSecret is for an external rediss:// Redis; the built-in Redis speaks plain TCP inside the cluster" }}
{{- end }}
{{- end }}
