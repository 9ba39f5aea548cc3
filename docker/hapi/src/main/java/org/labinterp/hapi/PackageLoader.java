package org.labinterp.hapi;

import ca.uhn.fhir.jpa.packages.IPackageInstallerSvc;
import ca.uhn.fhir.jpa.packages.PackageInstallationSpec;
import java.io.File;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import org.springframework.beans.factory.annotation.Value;
import org.springframework.boot.ApplicationArguments;
import org.springframework.boot.ApplicationRunner;
import org.springframework.stereotype.Component;

/**
 * Installs FHIR packages (.tgz, e.g. the Genomics Reporting IG from the npm registry) from local files
 * once the server is up, with dependency fetching off: there is no package registry to reach.
 * labinterp.hapi.packages = "name@version=/abs/path.tgz,name@version=/abs/path.tgz" (in order:
 * dependencies first). Stored for validation only (STORE_ONLY).
 */
@Component
public class PackageLoader implements ApplicationRunner {
	private static final Logger LOG = LoggerFactory.getLogger(PackageLoader.class);
	private final IPackageInstallerSvc installer;
	private final String packages;

	public PackageLoader(IPackageInstallerSvc installer, @Value("${labinterp.hapi.packages:}") String packages) {
		this.installer = installer;
		this.packages = packages;
	}

	@Override
	public void run(ApplicationArguments args) {
		for (String item : packages.split(",")) {
			if (item.isBlank()) {
				continue;
			}
			String[] nameAndFile = item.trim().split("=", 2);
			String[] nameAndVersion = nameAndFile[0].split("@", 2);
			File file = new File(nameAndFile[1]).getAbsoluteFile();
			if (!file.isFile()) {
				throw new IllegalStateException("labinterp.hapi.packages: no such file " + file);
			}
			PackageInstallationSpec spec = new PackageInstallationSpec()
					.setName(nameAndVersion[0])
					.setVersion(nameAndVersion[1])
					.setPackageUrl(file.toURI().toString())
					.setInstallMode(PackageInstallationSpec.InstallModeEnum.STORE_ONLY)
					.setFetchDependencies(false);
			installer.install(spec);
			LOG.info("installed package {}", nameAndFile[0]);
		}
		LOG.info("labinterp HAPI ready");
	}
}
