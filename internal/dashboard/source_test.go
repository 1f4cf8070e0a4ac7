package dashboard

import "github.com/mixopt/mixopt/internal/scheduler"

// The coordinator passes its scheduler as the Source; this fails to compile if the
// scheduler's read methods drift from the interface.
var _ Source = (*scheduler.Scheduler)(nil)
