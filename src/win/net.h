/* win/net.h — the socket headers shared code needs, Windows flavour (the
 * POSIX twin is unix/net.h; CMakeLists.txt puts one of the two directories
 * on the include path). */
#ifndef CG_NET_H
#define CG_NET_H

#include <winsock2.h>
#include <ws2tcpip.h>

#endif /* CG_NET_H */
