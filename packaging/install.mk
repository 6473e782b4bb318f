# packaging/install.mk — `make install` and `make deb`.
#
# The Makefile includes this file with the line
#
#     include packaging/install.mk
#
# placed after BINDIR and VERSION are set and after the `all` target (it
# replaces the Makefile's own "install and the Debian package" section).
#
# Uses from the Makefile: BINDIR (where rprd and rprctl are built: bin, or
# build/asan/bin with SAN=1) and VERSION (from the file VERSION).
#
#   make install [PREFIX=/usr] [DESTDIR=...]
#       binaries (stripped), systemd units, sysusers.d/tmpfiles.d entries,
#       the dashboard files, man pages (gzipped) and README.md.
#   make deb
#       build/deb/rpr_$(VERSION)_$(DEB_ARCH).deb, staged in build/deb/root
#       by `make install DESTDIR=...` and described by packaging/debian.

BINDIR      ?= bin
VERSION     ?= $(shell cat VERSION 2>/dev/null || echo 0.1.0)
PREFIX      ?= /usr
DESTDIR     ?=
INSTALL     ?= install
STRIP       ?= strip
# systemd reads units, sysusers.d and tmpfiles.d from /usr/lib and, for a
# PREFIX=/usr/local install, from /usr/local/lib too.
UNITDIR     ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
TMPFILESDIR ?= $(PREFIX)/lib/tmpfiles.d
DATADIR     ?= $(PREFIX)/share/rpr
MANDIR      ?= $(PREFIX)/share/man
DOCDIR      ?= $(PREFIX)/share/doc/rpr
SYSCONFDIR  ?= /etc

PKG_UNITS   := $(sort $(wildcard packaging/systemd/*.service packaging/systemd/*.socket packaging/systemd/*.timer))
# The units name /usr/bin; another PREFIX gets its own paths, and rprd is
# told where the dashboard is (its built-in default is /usr/share/rpr/web).
UNIT_SED    := -e 's|/usr/bin/|$(PREFIX)/bin/|g'
ifneq ($(PREFIX),/usr)
UNIT_SED    += -e 's|^\(ExecStart=$(PREFIX)/bin/rprd .*\)$$|\1 --web-dir $(DATADIR)/web|'
endif

DEB_ARCH    := $(shell dpkg --print-architecture 2>/dev/null || echo amd64)
DEB_STAGE   := build/deb/root
DEB_FILE    := build/deb/rpr_$(VERSION)_$(DEB_ARCH).deb

.PHONY: install deb

install: $(BINDIR)/rprd $(BINDIR)/rprctl $(BINDIR)/rpr-agent
	$(INSTALL) -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSUSERSDIR) \
	  $(DESTDIR)$(TMPFILESDIR) $(DESTDIR)$(DATADIR)/web $(DESTDIR)$(MANDIR)/man1 \
	  $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(DOCDIR) $(DESTDIR)$(SYSCONFDIR)/default
	$(INSTALL) -m 0755 -s $(BINDIR)/rprd $(BINDIR)/rprctl $(BINDIR)/rpr-agent $(DESTDIR)$(PREFIX)/bin/
	$(STRIP) --remove-section=.comment --remove-section=.note $(DESTDIR)$(PREFIX)/bin/rprd $(DESTDIR)$(PREFIX)/bin/rprctl \
	  $(DESTDIR)$(PREFIX)/bin/rpr-agent
	for u in $(PKG_UNITS); do \
	  sed $(UNIT_SED) $$u > $(DESTDIR)$(UNITDIR)/$${u##*/} && chmod 0644 $(DESTDIR)$(UNITDIR)/$${u##*/} || exit 1; \
	done
	$(INSTALL) -m 0644 packaging/sysusers.d/rpr.conf $(DESTDIR)$(SYSUSERSDIR)/rpr.conf
	$(INSTALL) -m 0644 packaging/tmpfiles.d/rpr.conf $(DESTDIR)$(TMPFILESDIR)/rpr.conf
	$(INSTALL) -m 0644 packaging/default/rpr $(DESTDIR)$(SYSCONFDIR)/default/rpr
	cd web && find . -type d -exec $(INSTALL) -d -m 0755 '$(abspath $(DESTDIR))$(DATADIR)/web/{}' ';' \
	  && find . -type f -exec $(INSTALL) -m 0644 '{}' '$(abspath $(DESTDIR))$(DATADIR)/web/{}' ';'
	gzip -9n < packaging/man/rprctl.1 > $(DESTDIR)$(MANDIR)/man1/rprctl.1.gz
	gzip -9n < packaging/man/rprd.8 > $(DESTDIR)$(MANDIR)/man8/rprd.8.gz
	gzip -9n < packaging/man/rpr-agent.8 > $(DESTDIR)$(MANDIR)/man8/rpr-agent.8.gz
	chmod 0644 $(DESTDIR)$(MANDIR)/man1/rprctl.1.gz $(DESTDIR)$(MANDIR)/man8/rprd.8.gz \
	  $(DESTDIR)$(MANDIR)/man8/rpr-agent.8.gz
	$(INSTALL) -m 0644 README.md $(DESTDIR)$(DOCDIR)/README.md

# rpr is a native package (VERSION has no Debian revision), so its Debian
# changelog is installed as changelog.gz: lintian wants that name for native
# packages and changelog.Debian.gz only beside an upstream changelog.
deb: $(BINDIR)/rprd $(BINDIR)/rprctl $(BINDIR)/rpr-agent
	rm -rf $(DEB_STAGE) $(DEB_FILE)
	$(MAKE) --no-print-directory -f $(firstword $(MAKEFILE_LIST)) install DESTDIR=$(CURDIR)/$(DEB_STAGE) PREFIX=/usr
	$(INSTALL) -d -m 0755 $(DEB_STAGE)/DEBIAN
	$(INSTALL) -m 0644 packaging/debian/copyright $(DEB_STAGE)/usr/share/doc/rpr/copyright
	gzip -9n < packaging/debian/changelog > $(DEB_STAGE)/usr/share/doc/rpr/changelog.gz
	chmod 0644 $(DEB_STAGE)/usr/share/doc/rpr/changelog.gz
	$(INSTALL) -D -m 0644 packaging/debian/lintian-overrides $(DEB_STAGE)/usr/share/lintian/overrides/rpr
	$(INSTALL) -m 0755 packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm $(DEB_STAGE)/DEBIAN/
	echo /etc/default/rpr > $(DEB_STAGE)/DEBIAN/conffiles && chmod 0644 $(DEB_STAGE)/DEBIAN/conffiles
	sed -e 's/@VERSION@/$(VERSION)/' -e 's/@ARCH@/$(DEB_ARCH)/' \
	  -e "s/@SIZE@/$$(du -sk --apparent-size --exclude=DEBIAN $(DEB_STAGE) | cut -f1)/" \
	  packaging/debian/control.in > $(DEB_STAGE)/DEBIAN/control
	cd $(DEB_STAGE) && find usr -type f | LC_ALL=C sort | xargs md5sum > DEBIAN/md5sums
	chmod 0644 $(DEB_STAGE)/DEBIAN/control $(DEB_STAGE)/DEBIAN/md5sums
	dpkg-deb --root-owner-group -Zxz --build $(DEB_STAGE) $(DEB_FILE)
	@echo "built $(DEB_FILE)"
