// The capture app of the Modular Neural ISP toolkit (android_harness/app/README.md). NOT built in this repository's
// CI: there is no Android SDK here. Build it with Android Studio or the command line described in the README.
pluginManagement {
    repositories {
        google()
        mavenCentral()
        gradlePluginPortal()
    }
}
dependencyResolutionManagement {
    repositoriesMode.set(RepositoriesMode.FAIL_ON_PROJECT_REPOS)
    repositories {
        google()
        mavenCentral()
    }
}
rootProject.name = "isp-capture"
include(":app")
