package translate

import (
	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/file/v3"
	celv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/filters/cel/v3"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	telemetry "istio.io/api/telemetry/v1alpha1"
)

// CELAccessLogFilter is Envoy's CEL access log filter, what a Telemetry
// accessLogging filter.expression becomes.
const CELAccessLogFilter = "envoy.access_loggers.extension_filters.cel"

// EnvoyAccessLogProvider is Istio's built-in access log provider: a file
// log to /dev/stdout in the mesh's encoding.
const EnvoyAccessLogProvider = "envoy"

// accessLogSpec is the merged accessLogging of one direction.
type accessLogSpec struct {
	set       bool
	providers []string
	disabled  bool
	filter    string
}

// accessLoggingFor merges the Telemetry accessLogging of one direction
// (client: outbound), least specific first, as for tracing.
func (s *scope) accessLoggingFor(client bool) accessLogSpec {
	var as accessLogSpec
	want := telemetry.WorkloadMode_SERVER
	if client {
		want = telemetry.WorkloadMode_CLIENT
	}
	for _, t := range s.telemetries() {
		for _, al := range t.GetAccessLogging() {
			if m := al.GetMatch().GetMode(); m != telemetry.WorkloadMode_CLIENT_AND_SERVER && m != want {
				continue
			}
			as.set = true
			if len(al.GetProviders()) > 0 {
				as.providers = as.providers[:0]
				for _, p := range al.GetProviders() {
					as.providers = append(as.providers, p.GetName())
				}
			}
			if v := al.GetDisabled(); v != nil {
				as.disabled = v.GetValue()
			}
			if f := al.GetFilter(); f != nil {
				as.filter = f.GetExpression()
			}
		}
	}
	return as
}

// accessLogs are the access logs of a connection manager or tcp_proxy:
// the Telemetry accessLogging that applies, else MeshConfig accessLogFile.
func (s *scope) accessLogs(client bool) []*accesslogv3.AccessLog {
	as := s.accessLoggingFor(client)
	if !as.set {
		return s.accessLog()
	}
	if as.disabled {
		return nil
	}
	providers := as.providers
	if len(providers) == 0 {
		providers = s.mesh.DefaultAccessLogProviders
	}
	if len(providers) == 0 {
		providers = []string{EnvoyAccessLogProvider}
	}
	var out []*accesslogv3.AccessLog
	for _, name := range providers {
		var l *accesslogv3.AccessLog
		if ep := s.extensionProvider(name); ep != nil && ep.GetEnvoyFileAccessLog() != nil {
			l = providerFileLog(ep.GetEnvoyFileAccessLog(), s.mesh.AccessLogEncoding)
		} else if name == EnvoyAccessLogProvider {
			l = fileAccessLog("/dev/stdout", s.mesh.AccessLogEncoding)
		}
		if l == nil {
			continue
		}
		if as.filter != "" {
			l.Filter = &accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_ExtensionFilter{ExtensionFilter: &accesslogv3.ExtensionFilter{
				Name:       CELAccessLogFilter,
				ConfigType: &accesslogv3.ExtensionFilter_TypedConfig{TypedConfig: mustAny(&celv3.ExpressionFilter{Expression: as.filter})},
			}}}
		}
		out = append(out, l)
	}
	return out
}

func (s *scope) extensionProvider(name string) *meshv1alpha1.MeshConfig_ExtensionProvider {
	for _, p := range s.mesh.ExtensionProviders {
		if p.GetName() == name {
			return p
		}
	}
	return nil
}

// providerFileLog is an envoyFileAccessLog provider: its path, and its
// text format or JSON labels (else Istio's default layout).
func providerFileLog(p *meshv1alpha1.MeshConfig_ExtensionProvider_EnvoyFileAccessLogProvider, encoding string) *accesslogv3.AccessLog {
	path := p.GetPath()
	if path == "" {
		path = "/dev/stdout"
	}
	lf := p.GetLogFormat()
	switch {
	case lf.GetText() != "":
		fl := &filev3.FileAccessLog{Path: path, AccessLogFormat: &filev3.FileAccessLog_LogFormat{LogFormat: &corev3.SubstitutionFormatString{
			Format: &corev3.SubstitutionFormatString_TextFormatSource{TextFormatSource: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: lf.GetText()}}},
		}}}
		return &accesslogv3.AccessLog{Name: FileAccessLog, ConfigType: &accesslogv3.AccessLog_TypedConfig{TypedConfig: mustAny(fl)}}
	case lf.GetLabels() != nil:
		fl := &filev3.FileAccessLog{Path: path, AccessLogFormat: &filev3.FileAccessLog_LogFormat{LogFormat: &corev3.SubstitutionFormatString{
			Format: &corev3.SubstitutionFormatString_JsonFormat{JsonFormat: lf.GetLabels()},
		}}}
		return &accesslogv3.AccessLog{Name: FileAccessLog, ConfigType: &accesslogv3.AccessLog_TypedConfig{TypedConfig: mustAny(fl)}}
	}
	return fileAccessLog(path, encoding)
}
