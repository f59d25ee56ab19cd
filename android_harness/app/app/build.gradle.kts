plugins {
    id("com.android.application")
    id("org.jetbrains.kotlin.android")
}

android {
    namespace = "org.modularisp.capture"
    compileSdk = 34

    defaultConfig {
        applicationId = "org.modularisp.capture"      // runtime_py/capture.py CAPTURE_PACKAGE
        minSdk = 28                                     // Camera2 SessionConfiguration, DngCreator, ImageReader
        targetSdk = 34
        versionCode = 1
        versionName = "0.1.0"
    }

    buildTypes {
        release {
            isMinifyEnabled = false
        }
    }
    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }
    kotlinOptions {
        jvmTarget = "17"
    }
}

// No library dependencies: Camera2, DngCreator and org.json are part of the platform.
