# Installation rules and the Debian package (Linux only).
#
#   cmake -S . -B build/package -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=/usr
#   cmake --build build/package -j2 && (cd build/package && cpack -G DEB)
#
# makes build/package/condgate_<version>-<release>_<arch>.deb (Debian 12,
# CMake 3.25). tests/package/check.sh builds, installs, checks and purges it.
#
# What is installed, for the prefix /usr:
#   /usr/sbin/condgate                      stripped by cpack
#   /etc/condgate/condgate.ini              config/condgate.ini, but with the
#                                           state file in /var/lib/condgate
#   /etc/condgate/{rules.json,blocklist.netset}   the rule files it includes
#   /lib/systemd/system/condgate.service, condgate.socket, condgate-admin.socket
#   /usr/share/man/man8/condgate.8.gz, man5/condgate.ini.5.gz      (src/man/)
#   /usr/share/condgate/monitoring/         the Grafana dashboard and alert
#                                           rules (examples/monitoring/)
#   /usr/share/doc/condgate/{copyright,changelog.Debian.gz}
# The man pages and monitoring files are installed when they exist in the
# source tree. The files under /etc are conffiles; cmake/deb/ holds the
# maintainer scripts (the condgate account, /var/lib/condgate, the units'
# enablement state) and the templates of the copyright and changelog files.

if(NOT CMAKE_SYSTEM_NAME STREQUAL "Linux")
  return()
endif()

include(GNUInstallDirs)

set(_cg_deb ${PROJECT_SOURCE_DIR}/cmake/deb)
set(_cg_gen ${PROJECT_BINARY_DIR}/package-files)
set(CG_CONFDIR ${CMAKE_INSTALL_FULL_SYSCONFDIR}/condgate)
# The unit's StateDirectory=condgate, whatever the prefix.
set(CG_STATEDIR /var/lib/condgate)
set(CG_SBIN ${CMAKE_INSTALL_FULL_SBINDIR}/condgate)

if(CMAKE_INSTALL_PREFIX STREQUAL "/usr")
  set(_cg_unitdir_default /lib/systemd/system)
  pkg_get_variable(_cg_pc_unitdir systemd systemdsystemunitdir)
  if(_cg_pc_unitdir)
    set(_cg_unitdir_default ${_cg_pc_unitdir})
  endif()
else()
  set(_cg_unitdir_default ${CMAKE_INSTALL_PREFIX}/lib/systemd/system)
endif()
set(CG_SYSTEMD_UNITDIR ${_cg_unitdir_default} CACHE PATH "Where the systemd units are installed")

set(_cg_inputs
  config/condgate.ini LICENSE
  examples/systemd/condgate.service examples/systemd/condgate.socket
  examples/systemd/condgate-admin.socket
  cmake/deb/changelog.in cmake/deb/copyright.in)
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${_cg_inputs})

# --- the binary -------------------------------------------------------------
install(TARGETS condgate RUNTIME DESTINATION ${CMAKE_INSTALL_SBINDIR})
# A stripped install (cpack: CPACK_STRIP_FILES) also drops the compiler's
# .comment and .note sections, as Debian's dh_strip does.
if(CMAKE_OBJCOPY)
  install(CODE "if(CMAKE_INSTALL_DO_STRIP)
    execute_process(COMMAND \"${CMAKE_OBJCOPY}\" --remove-section=.comment --remove-section=.note
                    \"\$ENV{DESTDIR}\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_SBINDIR}/condgate\"
                    COMMAND_ERROR_IS_FATAL ANY)
  endif()")
endif()

# --- the configuration -------------------------------------------------------
# config/condgate.ini as it is, but for two lines: its state file sits next to
# it (relative to the INI, so the repository's copy runs from anywhere), and
# under the unit /etc is read-only (ProtectSystem=strict), so the installed
# one keeps its state in the StateDirectory; and its header names the
# installed path.
file(READ ${PROJECT_SOURCE_DIR}/config/condgate.ini _cg_ini)
set(_cg_state_line "state_file = condgate.state.json")
set(_cg_check_line ";     condgate -t -c config/condgate.ini")
foreach(_cg_line IN ITEMS "${_cg_state_line}" "${_cg_check_line}")
  string(FIND "${_cg_ini}" "\n${_cg_line}\n" _cg_at)
  if(_cg_at EQUAL -1)
    message(FATAL_ERROR "cmake/Package.cmake: config/condgate.ini has no line "
                        "'${_cg_line}' to adjust for the package; update both together.")
  endif()
endforeach()
string(REPLACE "\n${_cg_state_line}\n"
       "\n; Installed: the service may write below ${CG_STATEDIR} only.\nstate_file = ${CG_STATEDIR}/condgate.state.json\n"
       _cg_ini "${_cg_ini}")
string(REPLACE "\n${_cg_check_line}\n" "\n;     condgate -t -c ${CG_CONFDIR}/condgate.ini\n"
       _cg_ini "${_cg_ini}")
file(GENERATE OUTPUT ${_cg_gen}/condgate.ini CONTENT "${_cg_ini}")

# The rule files condgate.ini includes, installed as they are.
set(CG_CONFIG_RULE_FILES rules.json blocklist.netset)
set(_cg_conffiles ${CG_CONFDIR}/condgate.ini)
set(_cg_rule_paths)
foreach(_cg_f IN LISTS CG_CONFIG_RULE_FILES)
  list(APPEND _cg_rule_paths ${PROJECT_SOURCE_DIR}/config/${_cg_f})
  list(APPEND _cg_conffiles ${CG_CONFDIR}/${_cg_f})
endforeach()
install(FILES ${_cg_gen}/condgate.ini ${_cg_rule_paths} DESTINATION ${CG_CONFDIR})
list(JOIN _cg_conffiles "\n" _cg_conffiles_text)
file(GENERATE OUTPUT ${_cg_gen}/conffiles CONTENT "${_cg_conffiles_text}\n")

# --- systemd units -----------------------------------------------------------
# examples/systemd/ names /usr/sbin/condgate and /etc/condgate; another prefix
# gets its own paths.
foreach(_cg_unit condgate.service condgate.socket condgate-admin.socket)
  file(READ ${PROJECT_SOURCE_DIR}/examples/systemd/${_cg_unit} _cg_text)
  string(REPLACE "/usr/sbin/condgate" "${CG_SBIN}" _cg_text "${_cg_text}")
  string(REPLACE "/etc/condgate" "${CG_CONFDIR}" _cg_text "${_cg_text}")
  file(GENERATE OUTPUT ${_cg_gen}/${_cg_unit} CONTENT "${_cg_text}")
  install(FILES ${_cg_gen}/${_cg_unit} DESTINATION ${CG_SYSTEMD_UNITDIR})
endforeach()

# --- man pages, monitoring examples -------------------------------------------
set(_cg_built)
foreach(_cg_page condgate.8 condgate.ini.5)
  set(_cg_src ${PROJECT_SOURCE_DIR}/src/man/${_cg_page})
  string(REGEX MATCH "[0-9]$" _cg_sec "${_cg_page}")
  add_custom_command(OUTPUT ${_cg_gen}/${_cg_page}.gz
    COMMAND sh -c "gzip -9n -c \"$0\" > \"$1\"" ${_cg_src} ${_cg_gen}/${_cg_page}.gz
    DEPENDS ${_cg_src} VERBATIM)
  list(APPEND _cg_built ${_cg_gen}/${_cg_page}.gz)
  install(FILES ${_cg_gen}/${_cg_page}.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man${_cg_sec})
endforeach()
foreach(_cg_f condgate-grafana.json condgate-alerts.yml)
  install(FILES ${PROJECT_SOURCE_DIR}/examples/monitoring/${_cg_f}
          DESTINATION ${CMAKE_INSTALL_DATADIR}/condgate/monitoring)
endforeach()

# --- Debian metadata ----------------------------------------------------------
set(CG_DEB_RELEASE 1 CACHE STRING "Debian revision of the package")
set(CG_DEB_MAINTAINER "condgate developers <condgate@example.org>" CACHE STRING
    "Maintainer: field of the Debian package, 'Name <address>'")
set(CG_DEB_VERSION ${PROJECT_VERSION}-${CG_DEB_RELEASE})
# The changelog's date: SOURCE_DATE_EPOCH when set, else the time of the
# checkout's last commit, else now; so a rebuild of one commit is the same.
set(_cg_epoch "$ENV{SOURCE_DATE_EPOCH}")
if(_cg_epoch STREQUAL "")
  execute_process(COMMAND git log -1 --format=%ct WORKING_DIRECTORY ${PROJECT_SOURCE_DIR}
                  OUTPUT_VARIABLE _cg_epoch OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
endif()
if(_cg_epoch MATCHES "^[0-9]+$")
  set(_cg_saved_epoch "$ENV{SOURCE_DATE_EPOCH}")
  set(ENV{SOURCE_DATE_EPOCH} ${_cg_epoch})
  string(TIMESTAMP CG_DEB_DATE "%a, %d %b %Y %H:%M:%S +0000" UTC)
  set(ENV{SOURCE_DATE_EPOCH} "${_cg_saved_epoch}")
else()
  string(TIMESTAMP CG_DEB_DATE "%a, %d %b %Y %H:%M:%S +0000" UTC)
endif()
configure_file(${_cg_deb}/changelog.in ${_cg_gen}/changelog.Debian @ONLY)

# copyright: LICENSE in the machine-readable format (the MIT licence is
# "Expat" there), its text indented and blank lines written as " .".
file(STRINGS ${PROJECT_SOURCE_DIR}/LICENSE _cg_license_lines)
set(CG_COPYRIGHT)
set(CG_LICENSE_TEXT)
foreach(_cg_line IN LISTS _cg_license_lines)
  if(NOT CG_COPYRIGHT AND _cg_line MATCHES "^Copyright \\(c\\) (.+)$")
    set(CG_COPYRIGHT "${CMAKE_MATCH_1}")
  elseif(_cg_line STREQUAL "")
    string(APPEND CG_LICENSE_TEXT " .\n")
  elseif(NOT _cg_line STREQUAL "MIT License")
    string(APPEND CG_LICENSE_TEXT " ${_cg_line}\n")
  endif()
endforeach()
if(NOT CG_COPYRIGHT)
  message(FATAL_ERROR "cmake/Package.cmake: no 'Copyright (c) ...' line in LICENSE")
endif()
string(REGEX REPLACE "^ \\.\n( \\.\n)*" "" CG_LICENSE_TEXT "${CG_LICENSE_TEXT}")
string(REGEX REPLACE "\n( \\.\n)+$" "\n" CG_LICENSE_TEXT "${CG_LICENSE_TEXT}")
string(REGEX REPLACE "\n$" "" CG_LICENSE_TEXT "${CG_LICENSE_TEXT}")
configure_file(${_cg_deb}/copyright.in ${_cg_gen}/copyright @ONLY)

add_custom_command(OUTPUT ${_cg_gen}/changelog.Debian.gz
  COMMAND sh -c "gzip -9n -c \"$0\" > \"$1\"" ${_cg_gen}/changelog.Debian
          ${_cg_gen}/changelog.Debian.gz
  DEPENDS ${_cg_gen}/changelog.Debian VERBATIM)
list(APPEND _cg_built ${_cg_gen}/changelog.Debian.gz)
add_custom_target(condgate_package_files ALL DEPENDS ${_cg_built})
install(FILES ${_cg_gen}/copyright ${_cg_gen}/changelog.Debian.gz
        DESTINATION ${CMAKE_INSTALL_DOCDIR})

# --- CPack ---------------------------------------------------------------------
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME condgate)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "${CG_DEB_MAINTAINER}")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "access-controlled TCP front door")
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION [=[
condgate listens on TCP ports and judges each caller's address against
allow and deny rules before the connection is handed on, in the shape of
the Winsock WSAAccept condition callback. A refused caller gets a TCP
reset and not one byte; admitted connections are relayed to backends
(round robin) or to a built-in echo service.

Rules come from INI, JSON and plain list files (FireHOL, ipdeny, Spamhaus
DROP), IPv4 and IPv6, millions of entries; the longest matching prefix
decides, and reloads swap the rules in atomically. An eBPF sk_lookup
program can refuse callers in the kernel before the handshake. An admin
HTTP port answers health checks, JSON statistics, Prometheus metrics and
rule explanations.]=])
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_RELEASE ${CG_DEB_RELEASE})
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# postinst makes the condgate account with adduser.
set(CPACK_DEBIAN_PACKAGE_DEPENDS adduser)
set(CPACK_DEBIAN_COMPRESSION_TYPE xz)
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
  ${_cg_gen}/conffiles ${_cg_deb}/postinst ${_cg_deb}/prerm ${_cg_deb}/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION TRUE)
set(CPACK_STRIP_FILES TRUE)
include(CPack)

# --- test ----------------------------------------------------------------------
# The units against systemd-analyze and the shipped configuration, before
# anything is installed (tests/package/check.sh checks the installed package).
if(CG_BUILD_TESTS)
  add_test(NAME package_units
           COMMAND ${PROJECT_SOURCE_DIR}/tests/package/units.sh $<TARGET_FILE:condgate>
                   ${_cg_gen} ${CG_SBIN})
  set_tests_properties(package_units PROPERTIES LABELS "package")
endif()
