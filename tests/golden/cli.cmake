# cli.cmake — run the condgate binary once and check what it did.
#
#   cmake -DCONDGATE=path -DARGS="-t -c FILE" [-DWORKDIR=dir] -DEXPECT_RC=N
#         [-DSTDOUT_REGEX=re] [-DSTDERR_REGEX=re] [-DSTDERR_EMPTY=1]
#         [-DSTDERR_FILE=NAME.expected -DSTDERR_PREFIX=dir/]
#         -P cli.cmake
#
# STDERR_FILE: stderr must be exactly STDERR_PREFIX followed by the file's
# one line (golden messages name the INI as given; run from elsewhere, the
# path in front of it changes).
separate_arguments(argv UNIX_COMMAND "${ARGS}")
if(NOT WORKDIR)
  set(WORKDIR ".")
endif()
# EMULATOR: how a cross-built binary runs here (empty for a native build).
execute_process(COMMAND ${EMULATOR} "${CONDGATE}" ${argv}
                WORKING_DIRECTORY "${WORKDIR}"
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
# A Windows binary writes text-mode "\r\n"; compare lines, not line ends.
string(REPLACE "\r\n" "\n" out "${out}")
string(REPLACE "\r\n" "\n" err "${err}")
set(report "condgate ${ARGS}\n--- exit: ${rc}\n--- stdout:\n${out}--- stderr:\n${err}")
if(NOT rc STREQUAL "${EXPECT_RC}")
  message(FATAL_ERROR "expected exit ${EXPECT_RC}\n${report}")
endif()
if(DEFINED STDOUT_REGEX AND NOT out MATCHES "${STDOUT_REGEX}")
  message(FATAL_ERROR "stdout does not match '${STDOUT_REGEX}'\n${report}")
endif()
if(DEFINED STDERR_REGEX AND NOT err MATCHES "${STDERR_REGEX}")
  message(FATAL_ERROR "stderr does not match '${STDERR_REGEX}'\n${report}")
endif()
if(STDERR_EMPTY AND NOT err STREQUAL "")
  message(FATAL_ERROR "expected nothing on stderr\n${report}")
endif()
if(DEFINED STDERR_FILE)
  file(READ "${STDERR_FILE}" want)
  string(STRIP "${want}" want)
  if(NOT err STREQUAL "${STDERR_PREFIX}${want}\n")
    message(FATAL_ERROR "expected on stderr exactly:\n${STDERR_PREFIX}${want}\n${report}")
  endif()
endif()
