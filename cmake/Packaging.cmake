# Packages for bare metal (cpack -G DEB, cpack -G RPM in the build tree):
#   ink-agent        ink-agent, ink-unpack, ink-dns, /etc/ink/agent.conf,
#                    /etc/ink/policies/*.policy, ink-agent.service
#   ink-coordinator  ink-coordinator, /etc/ink/coordinator.conf,
#                    ink-coordinator.service
# The install() rules of node-agent/ and coordinator/ fall in the "agent"
# and "coordinator" components; what only the packages carry is installed
# here. Maintainer scripts: packaging/debian (deb), packaging/rpm (rpm).
include(GNUInstallDirs)

set(INK_PKG_DIR ${CMAKE_SOURCE_DIR}/packaging)
set(INK_PKG_GEN ${CMAKE_BINARY_DIR}/packaging)
# /lib/systemd/system on Debian 12 (/usr/lib/systemd/system on usr-merged
# RPM systems, where /lib links to it).
set(INK_SYSTEMD_UNIT_DIR /lib/systemd/system CACHE STRING "where the packages put systemd units")

foreach(comp agent coordinator)
  set(pkg ink-${comp})
  install(FILES ${INK_PKG_DIR}/etc/${comp}.conf DESTINATION /etc/ink
          PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ COMPONENT ${comp})
  install(FILES ${INK_PKG_DIR}/systemd/${pkg}.service DESTINATION ${INK_SYSTEMD_UNIT_DIR}
          PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ COMPONENT ${comp})
  install(FILES ${INK_PKG_DIR}/debian/copyright DESTINATION ${CMAKE_INSTALL_DATADIR}/doc/${pkg}
          COMPONENT ${comp})
  install(FILES ${INK_PKG_DIR}/debian/${pkg}.lintian-overrides
          DESTINATION ${CMAKE_INSTALL_DATADIR}/lintian/overrides RENAME ${pkg} COMPONENT ${comp})

  # Debian wants a compressed changelog, reproducibly (gzip -n).
  file(MAKE_DIRECTORY ${INK_PKG_GEN}/${pkg})
  string(TIMESTAMP _date "%a, %d %b %Y %H:%M:%S +0000" UTC)
  file(WRITE ${INK_PKG_GEN}/${pkg}/changelog.Debian
       "${pkg} (${PROJECT_VERSION}-1) unstable; urgency=medium\n\n"
       "  * Built from the Ink source tree with CPack.\n\n"
       " -- Ink maintainers <ink-maintainers@example.org>  ${_date}\n")
  execute_process(COMMAND gzip -n -9 -f -k ${INK_PKG_GEN}/${pkg}/changelog.Debian)
  install(FILES ${INK_PKG_GEN}/${pkg}/changelog.Debian.gz
          DESTINATION ${CMAKE_INSTALL_DATADIR}/doc/${pkg} COMPONENT ${comp})
endforeach()

# Conffiles: every file under /etc/ink.
file(WRITE ${INK_PKG_GEN}/ink-agent/conffiles "/etc/ink/agent.conf\n")
foreach(p default deny-all allowlist)
  file(APPEND ${INK_PKG_GEN}/ink-agent/conffiles "/etc/ink/policies/${p}.policy\n")
endforeach()
file(WRITE ${INK_PKG_GEN}/ink-coordinator/conffiles "/etc/ink/coordinator.conf\n")

set(CPACK_PACKAGE_NAME ink)
set(CPACK_PACKAGE_VENDOR "Ink")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "Ink maintainers <ink-maintainers@example.org>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "Ink: gVisor workloads driven by AI agents over MCP")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_GENERATOR DEB RPM)
set(CPACK_COMPONENTS_ALL agent coordinator)
set(CPACK_STRIP_FILES ON)
set(CPACK_PACKAGE_RELOCATABLE OFF) # /etc/ink and the units have fixed places

set(INK_AGENT_DESCRIPTION "Ink node agent
 ink-agent runs the workloads the Ink coordinator assigns to this node in
 gVisor sandboxes (runsc), each with its own network namespace, cgroup,
 egress policy (nftables) and traffic counters (eBPF), and serves their
 logs, exec and metrics. With its confined helpers ink-unpack (image
 layers) and ink-dns (the node resolver).")
set(INK_COORDINATOR_DESCRIPTION "Ink coordinator
 ink-coordinator is the control plane of an Ink cluster: nodes connect to
 its NodeService over mutual TLS, AI agents deploy and manage apps through
 its MCP endpoint (Streamable HTTP, API keys), and its state is one SQLite
 database.")

# --- Debian -----------------------------------------------------------------
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_DEBIAN_AGENT_PACKAGE_NAME ink-agent)
set(CPACK_DEBIAN_COORDINATOR_PACKAGE_NAME ink-coordinator)
# runsc and nft(8) for the operator; the libraries come from dpkg-shlibdeps;
# adduser for the maintainer scripts.
set(CPACK_DEBIAN_AGENT_PACKAGE_DEPENDS "runsc, nftables, adduser")
set(CPACK_DEBIAN_AGENT_PACKAGE_RECOMMENDS "iproute2")
set(CPACK_DEBIAN_COORDINATOR_PACKAGE_DEPENDS "adduser")
set(CPACK_COMPONENT_AGENT_DESCRIPTION "${INK_AGENT_DESCRIPTION}")
set(CPACK_COMPONENT_COORDINATOR_DESCRIPTION "${INK_COORDINATOR_DESCRIPTION}")
foreach(comp agent coordinator)
  string(TOUPPER ${comp} C)
  # The control archive takes the files' names: postinst, prerm, postrm.
  foreach(script postinst prerm postrm)
    configure_file(${INK_PKG_DIR}/debian/ink-${comp}.${script} ${INK_PKG_GEN}/ink-${comp}/${script}
                   COPYONLY)
  endforeach()
  set(CPACK_DEBIAN_${C}_PACKAGE_CONTROL_EXTRA
      ${INK_PKG_GEN}/ink-${comp}/postinst ${INK_PKG_GEN}/ink-${comp}/prerm
      ${INK_PKG_GEN}/ink-${comp}/postrm ${INK_PKG_GEN}/ink-${comp}/conffiles)
endforeach()

# --- RPM --------------------------------------------------------------------
set(CPACK_RPM_COMPONENT_INSTALL ON)
set(CPACK_RPM_FILE_NAME RPM-DEFAULT)
set(CPACK_RPM_PACKAGE_RELEASE 1)
set(CPACK_RPM_PACKAGE_LICENSE "Unspecified")
set(CPACK_RPM_PACKAGE_GROUP "System Environment/Daemons")
set(CPACK_RPM_PACKAGE_AUTOREQ ON) # shared libraries, found by rpmbuild
set(CPACK_RPM_PACKAGE_AUTOPROV ON)
set(CPACK_RPM_AGENT_PACKAGE_NAME ink-agent)
set(CPACK_RPM_COORDINATOR_PACKAGE_NAME ink-coordinator)
set(CPACK_RPM_AGENT_PACKAGE_REQUIRES "runsc, nftables")
set(CPACK_RPM_AGENT_PACKAGE_SUMMARY "Ink node agent")
set(CPACK_RPM_COORDINATOR_PACKAGE_SUMMARY "Ink coordinator")
string(REGEX REPLACE "^[^\n]*\n" "" _d "${INK_AGENT_DESCRIPTION}")
string(REGEX REPLACE "\n " "\n" _d "${_d}")
set(CPACK_RPM_AGENT_PACKAGE_DESCRIPTION "${_d}")
string(REGEX REPLACE "^[^\n]*\n" "" _d "${INK_COORDINATOR_DESCRIPTION}")
string(REGEX REPLACE "\n " "\n" _d "${_d}")
set(CPACK_RPM_COORDINATOR_PACKAGE_DESCRIPTION "${_d}")
set(CPACK_RPM_PACKAGE_REQUIRES_PRE "shadow-utils")
set(CPACK_RPM_EXCLUDE_FROM_AUTO_FILELIST_ADDITION
    /lib /lib/systemd /lib/systemd/system /usr/libexec /usr/share/lintian
    /usr/share/lintian/overrides /usr/share/doc)
set(CPACK_RPM_AGENT_USER_FILELIST
    "%config(noreplace) /etc/ink/agent.conf" "%config(noreplace) /etc/ink/policies/default.policy"
    "%config(noreplace) /etc/ink/policies/deny-all.policy"
    "%config(noreplace) /etc/ink/policies/allowlist.policy"
    "%exclude /usr/share/lintian/overrides/ink-agent")
set(CPACK_RPM_COORDINATOR_USER_FILELIST "%config(noreplace) /etc/ink/coordinator.conf"
    "%exclude /usr/share/lintian/overrides/ink-coordinator")
foreach(comp agent coordinator)
  string(TOUPPER ${comp} C)
  set(CPACK_RPM_${C}_PRE_INSTALL_SCRIPT_FILE ${INK_PKG_DIR}/rpm/ink-${comp}.pre)
  set(CPACK_RPM_${C}_POST_INSTALL_SCRIPT_FILE ${INK_PKG_DIR}/rpm/ink-${comp}.post)
  set(CPACK_RPM_${C}_PRE_UNINSTALL_SCRIPT_FILE ${INK_PKG_DIR}/rpm/ink-${comp}.preun)
  set(CPACK_RPM_${C}_POST_UNINSTALL_SCRIPT_FILE ${INK_PKG_DIR}/rpm/ink-${comp}.postun)
endforeach()

include(CPack)
cpack_add_component(agent DISPLAY_NAME "ink-agent" DESCRIPTION "${INK_AGENT_DESCRIPTION}")
cpack_add_component(coordinator DISPLAY_NAME "ink-coordinator"
                    DESCRIPTION "${INK_COORDINATOR_DESCRIPTION}")
