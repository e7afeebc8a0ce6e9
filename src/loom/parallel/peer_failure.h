// The error of a rank whose own work was fine but whose peers were not there: a collective or a
// rendezvous failed because a peer exited, closed its end, aborted the run or did not arrive in
// time. A consequence, not a cause: when several ranks fail, launchers report the rank whose
// error is not one of these.
#pragma once
#include "loom/tensor/error.h"

namespace loom::parallel {

class PeerFailure : public Error {
 public:
  using Error::Error;
};

}  // namespace loom::parallel
