/* condgate.h — the umbrella header of the condgate library.
 *
 * Only includes the module headers; put no definitions here.
 */
#ifndef CONDGATE_H
#define CONDGATE_H

#include "condgate/common.h"
#include "condgate/rules.h"
#include "condgate/config.h"
#include "condgate/accept.h"

#endif /* CONDGATE_H */
