/* unix/net.h — the socket headers shared code needs, POSIX flavour (the
 * Windows twin is win/net.h; CMakeLists.txt puts one of the two directories
 * on the include path). */
#ifndef CG_NET_H
#define CG_NET_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#endif /* CG_NET_H */
