package promwsrpc

// HotSlot is hotSlot, for the tests of package promwsrpc_test.
var HotSlot = hotSlot
