// Package xenapi is the operator's client for XenServer's XenAPI: XML-RPC
// (calls encoded by github.com/kolo/xmlrpc, responses decoded as they
// stream in), typed records and calls, typed errors, one shared session per
// endpoint and credentials (Pool), Async tasks and an event.from watcher.
// It has no Kubernetes imports.
package xenapi

import (
	"errors"
	"fmt"
	"strings"
)

// The xapi error codes the operator acts on.
const (
	CodeSessionInvalid              = "SESSION_INVALID"
	CodeSessionAuthenticationFailed = "SESSION_AUTHENTICATION_FAILED"
	CodeHostIsSlave                 = "HOST_IS_SLAVE"
	CodeHandleInvalid               = "HANDLE_INVALID"
	CodeUUIDInvalid                 = "UUID_INVALID"
	CodeVMBadPowerState             = "VM_BAD_POWER_STATE"
	CodeVMLacksFeature              = "VM_LACKS_FEATURE"
	CodeVMIsTemplate                = "VM_IS_TEMPLATE"
	CodeOtherOperationInProgress    = "OTHER_OPERATION_IN_PROGRESS"
	CodeOperationBlocked            = "OPERATION_BLOCKED"
	CodeHostNotEnoughFreeMemory     = "HOST_NOT_ENOUGH_FREE_MEMORY"
	CodeNoHostsAvailable            = "NO_HOSTS_AVAILABLE"
	CodeTaskCancelled               = "TASK_CANCELLED"
	CodeMessageMethodUnknown        = "MESSAGE_METHOD_UNKNOWN"
	CodeOperationNotAllowed         = "OPERATION_NOT_ALLOWED"
	CodeMapDuplicateKey             = "MAP_DUPLICATE_KEY"
	CodeSRFull                      = "SR_FULL"
	CodeSRBackendFailure            = "SR_BACKEND_FAILURE_"
	CodeSROperationNotSupported     = "SR_OPERATION_NOT_SUPPORTED"
	CodeVDIInUse                    = "VDI_IN_USE"
	CodeVMRequiresSR                = "VM_REQUIRES_SR"
	CodeDeviceAlreadyExists         = "DEVICE_ALREADY_EXISTS"
	CodeInvalidDevice               = "INVALID_DEVICE"
	CodeMACInvalid                  = "MAC_INVALID"
	CodeVBDNotUnpluggable           = "VBD_NOT_UNPLUGGABLE"
	CodeDeviceAlreadyAttached       = "DEVICE_ALREADY_ATTACHED"
	CodeDeviceAlreadyDetached       = "DEVICE_ALREADY_DETACHED"
)

// Error is a failure xapi reported: its code and parameters, and the method
// that failed.
type Error struct {
	Method string
	Code   string
	Params []string
}

func (e *Error) Error() string {
	params := e.Params
	if e.Code == CodeSessionInvalid {
		params = nil // the parameter is a session ref: never show it
	}
	if len(params) == 0 {
		return fmt.Sprintf("xenapi %s: %s", e.Method, e.Code)
	}
	return fmt.Sprintf("xenapi %s: %s [%s]", e.Method, e.Code, strings.Join(params, ", "))
}

// Param returns the i-th parameter, or "" when there is none.
func (e *Error) Param(i int) string {
	if i < len(e.Params) {
		return e.Params[i]
	}
	return ""
}

// ConnectionError is a failure to reach xapi or to understand its answer:
// refused or timed-out connections, TLS failures, HTTP errors, malformed
// responses. It is never a XenAPI error, so never "not found".
type ConnectionError struct {
	Endpoint string
	Err      error
}

func (e *ConnectionError) Error() string {
	return fmt.Sprintf("xenapi: cannot reach %s: %v", e.Endpoint, e.Err)
}

func (e *ConnectionError) Unwrap() error { return e.Err }

// ErrTaskCollected means xapi collected an Async task before its result
// was read: the operation's outcome is unknown, so look at the object again.
var ErrTaskCollected = errors.New("xenapi: the task was collected before its result was read; look at the object again")

// ErrClosed is returned by calls on a closed Pool or Client.
var ErrClosed = errors.New("xenapi: client closed")

func codeOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// CodeOf is the XenAPI error code in err's chain, "" for none.
func CodeOf(err error) string { return codeOf(err) }

// AsError returns the XenAPI error in err's chain.
func AsError(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}

// IsSessionInvalid reports a session xapi does not know (any more).
func IsSessionInvalid(err error) bool { return codeOf(err) == CodeSessionInvalid }

// IsAuthenticationFailed reports rejected credentials.
func IsAuthenticationFailed(err error) bool { return codeOf(err) == CodeSessionAuthenticationFailed }

// IsHostIsSlave reports a call to a pool member instead of the coordinator.
func IsHostIsSlave(err error) bool { return codeOf(err) == CodeHostIsSlave }

// IsHandleInvalid reports an object reference xapi does not know.
func IsHandleInvalid(err error) bool { return codeOf(err) == CodeHandleInvalid }

// IsUUIDInvalid reports a UUID xapi does not know.
func IsUUIDInvalid(err error) bool { return codeOf(err) == CodeUUIDInvalid }

// IsNotFound reports an object that does not exist: HANDLE_INVALID or
// UUID_INVALID. Connection and authentication failures are never "not found".
func IsNotFound(err error) bool { return IsHandleInvalid(err) || IsUUIDInvalid(err) }

// IsBadPowerState reports an operation the VM's power state does not allow.
func IsBadPowerState(err error) bool { return codeOf(err) == CodeVMBadPowerState }

// IsLacksFeature reports a guest without the agent feature an operation needs.
func IsLacksFeature(err error) bool { return codeOf(err) == CodeVMLacksFeature }

// IsOtherOperationInProgress reports a conflicting operation in progress.
func IsOtherOperationInProgress(err error) bool {
	return codeOf(err) == CodeOtherOperationInProgress
}

// IsOperationNotAllowed reports an operation the object does not allow now
// (for a task: cancelling one that already ended).
func IsOperationNotAllowed(err error) bool { return codeOf(err) == CodeOperationNotAllowed }

// IsConnectionError reports a failure to reach xapi.
func IsConnectionError(err error) bool {
	var c *ConnectionError
	return errors.As(err, &c)
}

// IsSRFull reports an SR with no room for a disk: xapi's SR_FULL, or what
// the SR's SM driver answers, which xapi passes on as SR_BACKEND_FAILURE_<n>
// [code, message, details]: SRNoSpace (44) from LVM SRs, and vhd-util's
// ENOSPC ("error 28") from file SRs such as NFS.
func IsSRFull(err error) bool {
	e, ok := AsError(err)
	switch {
	case !ok:
		return false
	case e.Code == CodeSRFull || e.Code == CodeSRBackendFailure+"44":
		return true
	}
	return strings.HasPrefix(e.Code, CodeSRBackendFailure) && strings.Contains(e.Param(1), "error 28")
}

// IsSROperationNotSupported reports an SR whose driver cannot do the
// operation (an ISO library asked to create a disk).
func IsSROperationNotSupported(err error) bool { return codeOf(err) == CodeSROperationNotSupported }

// IsVDIInUse reports a disk an operation needs detached.
func IsVDIInUse(err error) bool { return codeOf(err) == CodeVDIInUse }

// IsVMRequiresSR reports a VM whose disks the chosen host cannot reach.
func IsVMRequiresSR(err error) bool { return codeOf(err) == CodeVMRequiresSR }

// IsDeviceAlreadyExists reports a device number a VM already uses.
func IsDeviceAlreadyExists(err error) bool { return codeOf(err) == CodeDeviceAlreadyExists }

// IsDeviceAlreadyAttached reports a plug of a device that is plugged.
func IsDeviceAlreadyAttached(err error) bool { return codeOf(err) == CodeDeviceAlreadyAttached }

// IsDeviceAlreadyDetached reports an unplug of a device that is unplugged.
func IsDeviceAlreadyDetached(err error) bool { return codeOf(err) == CodeDeviceAlreadyDetached }
