// Package version holds the operator's version, set at build time with
// -ldflags "-X github.com/xen-operator/xen-operator/internal/version.Version=...".
package version

// Version is the operator's version; "dev" for builds that did not set it.
var Version = "dev"

// Originator is what the operator sends to xapi as the session originator, so
// that xapi counts its sessions apart from other tools' sessions.
func Originator() string { return "xen-operator/" + Version }
